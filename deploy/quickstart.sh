#!/usr/bin/env bash
# The README's first command: installs the dependencies, builds, fetches the
# default model (SmolLM2-135M-Instruct), starts braidd with it (on the GPU when
# there is one and the build has CUDA, else on the CPU), registers a document
# as a chunk with `braid chunk add`, and streams answers with `braid generate`:
# the same question twice, the second time from the chunk's cached KV.
# Pass --serve to keep braidd running in the foreground afterwards.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
addr=${BRAID_ADDRESS:-tcp://127.0.0.1:7543}

bash deploy/setup.sh
bash deploy/build.sh build
model=$(bash deploy/fetch_model.sh)

echo "== starting braidd on $addr"
./build/service/braidd --listen "$addr" --model "$model" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  ./build/clients/braid --address "$addr" --timeout 500 health >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { echo "braidd failed to start"; exit 1; }
  sleep 0.2
done
echo "== braid health"
./build/clients/braid --address "$addr" health

doc=$(mktemp)
cat >"$doc" <<'DOC'
Braidinfer is an inference service for workloads that reuse context. Documents are
registered once as chunks; their KV cache is computed once, kept in a paged pool and
shared by every request that composes them.
DOC
echo "== braid chunk add: the document becomes a chunk (its KV is computed once)"
id=$(./build/clients/braid --address "$addr" chunk add "$doc")
echo "$id"
for round in 1 2; do
  echo "== braid generate (round $round): system prompt + the chunk + a question, streamed"
  ./build/clients/braid --address "$addr" generate --max-tokens 60 \
    --system "You are a helpful assistant. Answer in one or two sentences." \
    --chunk "$id" --prompt "What does Braidinfer do with documents?"
done
rm -f "$doc"

if [ "${1:-}" = "--serve" ]; then
  echo "== braidd is serving on $addr; Ctrl-C to stop"
  wait $pid
else
  kill -TERM $pid
  wait $pid || true
  echo "== done (run 'deploy/quickstart.sh --serve' to keep braidd running)"
fi
