#!/usr/bin/env bash
# Runs every GPU test on the GPU machine, with the binaries built here.
#   tests/gpu/run.sh [BUILD_DIR]   (default build/)
# Checks the GPU first, runs each tests/gpu program (exit 0 pass, 77 skip,
# anything else fail), writes logs under $OUT (or tests/gpu/out) and prints a
# summary table last.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$here/build}
out=${OUT:-$here/tests/gpu/out}
mkdir -p "$out"

echo "== GPU"
if ! nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; then
  echo "no GPU visible (nvidia-smi failed)"; exit 1
fi

pass=0 fail=0 skip=0
summary=()
for t in "$build"/tests/gpu/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  echo "== $name"
  "$t" 2>&1 | tee "$out/$name.log"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) pass=$((pass + 1)); summary+=("PASS $name") ;;
    77) skip=$((skip + 1)); summary+=("SKIP $name") ;;
    *) fail=$((fail + 1)); summary+=("FAIL $name (exit $rc)") ;;
  esac
done

echo "== summary"
printf '%s\n' "${summary[@]}"
echo "gpu: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ] && [ $pass -gt 0 ]
