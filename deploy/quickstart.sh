#!/usr/bin/env bash
# The README's first command: installs the dependencies, builds, starts braidd
# and talks to it with the `braid` client. Pass --serve to keep braidd running in
# the foreground afterwards (Ctrl-C stops it).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
addr=${BRAID_ADDRESS:-tcp://127.0.0.1:7543}

bash deploy/setup.sh
bash deploy/build.sh build

echo "== starting braidd on $addr"
./build/service/braidd --listen "$addr" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  ./build/clients/braid --address "$addr" --timeout 500 health >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { echo "braidd failed to start"; exit 1; }
  sleep 0.2
done
echo "== braid health"
./build/clients/braid --address "$addr" health

if [ "${1:-}" = "--serve" ]; then
  echo "== braidd is serving on $addr; Ctrl-C to stop"
  wait $pid
else
  kill -TERM $pid
  wait $pid || true
  echo "== done (run 'deploy/quickstart.sh --serve' to keep braidd running)"
fi
