#!/usr/bin/env bash
# Runs every GPU test on the GPU machine, with the binaries built here, then
# the GPU benchmarks.
#   tests/gpu/run.sh [BUILD_DIR]   (default build/; run from anywhere)
# Checks the GPU first, runs each BUILD_DIR/tests/gpu/test_* program from the
# repo root with the fixtures folder as its argument (exit 0 pass, 77 skip,
# anything else fail), then BUILD_DIR/tests/bench/bench_gpu under a time cap
# (BENCH_TIMEOUT_S, default 300) and BUILD_DIR/tests/bench/bench_gpu_ttft
# (time to first token with cached chunks); SKIP_BENCH=1 skips both. The
# attention tests run a second time with BRAID_TC_ATTN=0. Logs
# and bench_gpu.json go under $OUT (or tests/gpu/out); a summary table is
# printed last.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$here/build}
build=$(cd "$build" && pwd)
out=${OUT:-$here/tests/gpu/out}
mkdir -p "$out"
export OUT=$out
cd "$here"
# cJSON and PCRE2 exist only as shared libraries in Debian; the build copies
# them here because the GPU machine does not have them.
export LD_LIBRARY_PATH="$build/tests/gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

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
  timeout "${TEST_TIMEOUT_S:-180}" "$t" "$here/tests/fixtures/models" 2>&1 | tee "$out/$name.log"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) pass=$((pass + 1)); summary+=("PASS $name") ;;
    77) skip=$((skip + 1)); summary+=("SKIP $name") ;;
    *) fail=$((fail + 1)); summary+=("FAIL $name (exit $rc)") ;;
  esac
done

# The attention tests again with the tensor-core paths off: the per-token
# (split-KV) kernel then serves every token and shape.
for name in test_attention test_split test_cascade test_batch; do
  t="$build/tests/gpu/$name"
  [ -x "$t" ] || continue
  echo "== $name (BRAID_TC_ATTN=0)"
  BRAID_TC_ATTN=0 timeout "${TEST_TIMEOUT_S:-180}" "$t" "$here/tests/fixtures/models" 2>&1 |
    tee "$out/$name.notc.log"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) pass=$((pass + 1)); summary+=("PASS $name (per-token kernels)") ;;
    77) skip=$((skip + 1)); summary+=("SKIP $name (per-token kernels)") ;;
    *) fail=$((fail + 1)); summary+=("FAIL $name (per-token kernels, exit $rc)") ;;
  esac
done

bench="$build/tests/bench/bench_gpu"
if [ -x "$bench" ] && [ "${SKIP_BENCH:-0}" != 1 ]; then
  echo "== bench_gpu"
  BENCH_BUDGET_S=${BENCH_BUDGET_S:-200} timeout "${BENCH_TIMEOUT_S:-300}" "$bench" 2>&1 |
    tee "$out/bench_gpu.log"
  rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] && summary+=("RAN  bench_gpu") || summary+=("BENCH bench_gpu exit $rc")
fi

ttft="$build/tests/bench/bench_gpu_ttft"
if [ -x "$ttft" ] && [ "${SKIP_BENCH:-0}" != 1 ]; then
  echo "== bench_gpu_ttft"
  timeout "${BENCH_TIMEOUT_S:-300}" "$ttft" 2>&1 | tee "$out/bench_gpu_ttft.log"
  rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] && summary+=("RAN  bench_gpu_ttft") || summary+=("BENCH bench_gpu_ttft exit $rc")
fi

echo "== summary"
[ -f "$out/bench_gpu.log" ] && sed -n '/^== bench_gpu (/,$p' "$out/bench_gpu.log"
[ -f "$out/bench_gpu_ttft.log" ] && sed -n '/^== bench_gpu_ttft (/,$p' "$out/bench_gpu_ttft.log"
printf '%s\n' "${summary[@]}"
echo "gpu: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ] && [ $pass -gt 0 ]
