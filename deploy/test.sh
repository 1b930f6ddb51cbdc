#!/usr/bin/env bash
# The README's test command (and CI's, through .ci/run): installs the
# dependencies, builds the release tree and the ASan+UBSan tree, and runs every
# test that needs no GPU in both. GPU tests run on a GPU machine: tests/gpu/run.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

bash deploy/setup.sh
# The real-model tests (SmolLM2 answers "Paris") need the default model.
bash deploy/fetch_model.sh >/dev/null
echo "== build (release)"
bash deploy/build.sh build
echo "== build (asan+ubsan)"
# The sanitizer tree skips CUDA: its GPU programs cannot run here anyway.
bash deploy/build.sh build-asan -DBRAID_SANITIZE=ON -DBRAID_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for b in build build-asan; do
  echo "== tests in $b"
  (cd "$b" && ctest --output-on-failure -j 2 -LE gpu) || status=1
done
exit $status
