#!/usr/bin/env bash
# Integration: the C client and the `braid` CLI against a real braidd serving
# SmolLM2 on a free port. Runs test_c_client (libbraid: reuse, streams,
# cancel, 32 concurrent streams, resume), then the CLI's commands, chat driven
# through stdin, and a client killed with SIGKILL mid-stream (braidd must free
# its request and KV after the stream idle timeout).
# Usage: test_c_client.sh BRAIDD BRAID TEST_C_CLIENT MODEL
set -euo pipefail
braidd=$1 braid=$2 test_bin=$3 model=$4
dir=$(dirname "$0")
. "$dir/lib.sh"
[ -f "$model" ] || { echo "SKIP: no model at $model (deploy/fetch_model.sh)"; exit 77; }

port=$(free_port)
addr="tcp://127.0.0.1:$port"
tmp=$(mktemp -d)
log=$tmp/braidd.log
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
"$braidd" --listen "$addr" --model "$model" --threads 2 --stream-idle-timeout 2 >"$log" 2>&1 &
pid=$!
wait_for_health "$braid" "$addr" "$pid" "$log"
b() { "$braid" --address "$addr" "$@"; }
stat() { b stats | awk -v k="$1:" '$1 == k { print $2 }'; }

echo "== libbraid"
"$test_bin" "$addr"

echo "== braid chunk"
printf 'Braidinfer keeps the KV cache of registered chunks in a paged pool.\n' >"$tmp/doc.txt"
id=$(b chunk add "$tmp/doc.txt" 2>"$tmp/err")
[[ $id =~ ^[0-9a-f]{64}$ ]] || { echo "chunk add printed '$id'"; exit 1; }
grep -q 'context chunk' "$tmp/err"
[ "$(b chunk add "$tmp/doc.txt" 2>&1 >/dev/null | grep -c 'already registered')" = 1 ]
b chunk list | grep -q "^$id"
b chunk show "$id" --text | grep -q 'paged pool'
b chunk pin "$id" 2>&1 | grep -q pinned
b chunk show "$id" | grep -q '^pinned: yes'

echo "== braid generate"
out=$(b generate --chunk "$id" --prompt 'Where is the KV cache kept?' --max-tokens 8 \
  --ignore-eos 2>"$tmp/usage")
[ -n "$out" ]
grep -Eq '^\[8 tokens, prompt [0-9]+ \([0-9]+ cached\), TTFT [0-9.]+ ms' "$tmp/usage"
b generate --system 'Be brief.' --context "$tmp/doc.txt" --prompt 'Sum up.' --max-tokens 4 \
  --ignore-eos 2>"$tmp/usage2" >/dev/null
b generate --system 'Be brief.' --context "$tmp/doc.txt" --prompt 'Sum up.' --max-tokens 4 \
  --ignore-eos 2>"$tmp/usage3" >/dev/null
grep -Eq '\(([1-9][0-9]*) cached\)' "$tmp/usage3" || { cat "$tmp/usage3"; exit 1; }
b generate --prompt 'Hi' --max-tokens 3 --ignore-eos --json >"$tmp/events.json" 2>/dev/null
python3 - "$tmp/events.json" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
assert [e["seq"] for e in ev] == list(range(1, len(ev) + 1)), ev
assert [e["type"] for e in ev] == ["token"] * 3 + ["final"], ev
assert ev[-1]["finish_reason"] == "length" and ev[-1]["completion_tokens"] == 3, ev[-1]
PY
set +e
b generate --chunk 0000000000000000000000000000000000000000000000000000000000000000 \
  --prompt x 2>"$tmp/err"; rc=$?
set -e
[ "$rc" = 1 ] && grep -q NOT_FOUND "$tmp/err"
b stats | grep -q '^generations: '
b model | grep -q '^architecture: llama'
b chunk rm "$id" 2>&1 | grep -q deleted
b chunk list | grep -qv "^$id"

echo "== braid chat"
printf '/system You answer in one short sentence.\n/context %s\n/query\nWhat is kept in the pool?\n/infer\n/use-output 1\n/query\n/reset\n/query\n/chunks\n/stats\n/bogus\n/quit\n' \
  "$tmp/doc.txt" | b chat --max-tokens 6 --ignore-eos >"$tmp/chat.out" 2>"$tmp/chat.err"
cat "$tmp/chat.out"
grep -q '1. system' "$tmp/chat.out"
grep -q '2. context' "$tmp/chat.out"
grep -q 'assistant' "$tmp/chat.out"
grep -q 'the composition is empty' "$tmp/chat.out"
grep -q '^generations: ' "$tmp/chat.out"
grep -q 'unknown command /bogus' "$tmp/chat.err"
[ "$(grep -c 'tokens, prompt' "$tmp/chat.err")" = 2 ]

echo "== a client killed mid-stream"
sleep 3 # streams of the earlier steps expire
free0=$(stat kv_pages_free)
# Not through b(): $! must be the braid process itself, not a subshell.
"$braid" --address "$addr" generate --prompt 'Write a long essay about rivers.' \
  --max-tokens 2000 --ignore-eos >"$tmp/killed.out" 2>/dev/null &
gpid=$!
for _ in $(seq 1 100); do [ -s "$tmp/killed.out" ] && break; sleep 0.1; done
[ -s "$tmp/killed.out" ] || { echo "no token arrived"; exit 1; }
[ "$(stat running)" = 1 ]
kill -9 $gpid
wait $gpid 2>/dev/null || true
for _ in $(seq 1 100); do
  [ "$(stat running)" = 0 ] && [ "$(stat kv_pages_free)" = "$free0" ] && break
  sleep 0.1
done
[ "$(stat running)" = 0 ] || { echo "the killed client's request still runs"; b stats; exit 1; }
[ "$(stat kv_pages_free)" = "$free0" ] || { echo "KV not freed"; b stats; exit 1; }

kill -TERM "$pid"
wait "$pid"
echo "PASS integration.c_client"
