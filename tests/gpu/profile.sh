#!/usr/bin/env bash
# Per-kernel GPU time of one benchmark case, through Nsight Compute (ncu),
# on the GPU machine, with CUDA graphs off so that each kernel is seen:
#   tests/gpu/profile.sh BUILD_DIR PRESET BATCH SKIP COUNT
# BATCH: a decode batch of bench_gpu (1, 8, 64, 256) or 0 for the 2048-token
# prefill. SKIP: kernel launches to let pass first (warm-up), COUNT: launches
# to time (about one step); caches are not flushed between kernels, as in a
# real step. Prints the time per kernel name, largest first;
# the raw CSV goes to $OUT/profile_PRESET_BATCH.csv.
set -euo pipefail
build=$1 preset=$2 batch=$3 skip=$4 count=$5
out=${OUT:-/tmp}
csv=$out/profile_${preset}_${batch}.csv
BRAID_CUDA_GRAPHS=0 BENCH_BATCHES=$batch ncu --clock-control none --cache-control none --launch-skip "$skip" \
  --launch-count "$count" --csv --metrics gpu__time_duration.sum \
  "$build/tests/bench/bench_gpu" "$preset" >"$csv" 2>"$out/profile_${preset}_${batch}.err" || true
python3 - "$csv" <<'PY'
import csv, sys, collections
rows = []
with open(sys.argv[1]) as f:
    lines = [l for l in f if l.startswith('"')]
for r in csv.DictReader(lines):
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    v = float(r["Metric Value"].replace(",", ""))
    unit = r.get("Metric Unit", "ns")
    v *= {"ns": 1e-3, "us": 1.0, "usecond": 1.0, "nsecond": 1e-3, "ms": 1e3, "msecond": 1e3}.get(unit, 1e-3)
    rows.append((r["Kernel Name"][:90], v))
agg = collections.defaultdict(lambda: [0, 0.0])
for n, v in rows:
    agg[n][0] += 1
    agg[n][1] += v
tot = sum(v for _, v in rows)
print(f"{len(rows)} kernels, {tot:.1f} us in total")
for n, (c, v) in sorted(agg.items(), key=lambda x: -x[1][1]):
    print(f"{v:10.1f} us {100*v/tot:5.1f}% {c:5d}x  {n}")
PY
