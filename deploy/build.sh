#!/usr/bin/env bash
# Configures and builds one build tree. Usage: deploy/build.sh [DIR] [cmake args...]
# DIR defaults to build/. Uses ninja when it is installed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-build}
shift || true
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
if [ ! -f "$here/$dir/CMakeCache.txt" ]; then
  cmake -S "$here" -B "$here/$dir" "${gen[@]}" "$@"
else
  cmake -S "$here" -B "$here/$dir" "$@" >/dev/null
fi
cmake --build "$here/$dir" -j "$(nproc)"
