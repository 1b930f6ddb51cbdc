#!/usr/bin/env bash
# Builds every libFuzzer target with clang (in build-fuzz/, or $BRAID_FUZZ_BUILD)
# and runs each for SECONDS (default 60), starting from its committed seed
# corpus. New corpus entries go to build-fuzz/fuzz-corpus/<target>/ (not the
# repository); crashes to build-fuzz/crash-<target>-*. Exits non-zero when a
# target crashed.
#   tests/fuzz/run.sh [SECONDS]
set -euo pipefail
secs=${1:-60}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${BRAID_FUZZ_BUILD:-$here/build-fuzz}
say() { printf '[fuzz] %s\n' "$*"; }

if ! command -v clang >/dev/null; then
  say "clang not found: installing it (apt-get install clang)"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq clang >/dev/null
fi

cmake -S "$here" -B "$build" -G Ninja -DCMAKE_C_COMPILER=clang -DBRAID_FUZZ=ON -DBRAID_CUDA=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
  >"$build.cmake.log" 2>&1 || { cat "$build.cmake.log"; exit 1; }
targets=$(sed -n 's/^braid_add_fuzz(\([A-Za-z0-9_]*\).*/\1/p' "$here/tests/fuzz/CMakeLists.txt")
ninja -C "$build" $(for t in $targets; do printf 'fuzz_%s ' "$t"; done)

status=0
for t in $targets; do
  work="$build/fuzz-corpus/$t"
  mkdir -p "$work"
  say "$t: fuzzing for ${secs}s"
  if ! "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -timeout=10 \
      -rss_limit_mb=4096 -max_len=65536 -artifact_prefix="$build/crash-$t-" \
      "$work" "$here/tests/fuzz/corpus/$t" >"$build/fuzz-$t.log" 2>&1; then
    say "$t: CRASH (see $build/fuzz-$t.log)"
    grep -E "ERROR|SUMMARY|Test unit written" "$build/fuzz-$t.log" | head -5
    status=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$build/fuzz-$t.log")
  cov=$(grep -E '^#[0-9]+' "$build/fuzz-$t.log" | tail -1 | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  say "$t: ${execs:-?} executions, coverage ${cov:-?} edges, corpus $(ls "$work" | wc -l) files"
done
exit $status
