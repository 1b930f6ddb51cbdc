#!/usr/bin/env bash
# Copies what the GPU machine runs out of a build folder into a small one
# (the device tool carries at most 64 MiB):
#   tests/gpu/pack.sh BUILD_DIR DEST_DIR     e.g. tests/gpu/pack.sh build build-gpu
# DEST keeps the layout run.sh and profile.sh expect (DEST/tests/gpu/test_*,
# DEST/tests/gpu/lib, DEST/tests/bench/bench_gpu*); DEST must be git-ignored
# (build-* is).
set -euo pipefail
src=$1 dst=$2
rm -rf "$dst"
mkdir -p "$dst/tests/gpu" "$dst/tests/bench"
cp -a "$src"/tests/gpu/test_* "$dst/tests/gpu/"
cp -a "$src/tests/gpu/lib" "$dst/tests/gpu/"
cp -a "$src"/tests/bench/bench_gpu* "$dst/tests/bench/" 2>/dev/null || true
strip --strip-debug "$dst"/tests/gpu/test_* "$dst"/tests/bench/bench_gpu* 2>/dev/null || true
du -sh "$dst"
