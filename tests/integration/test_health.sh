#!/usr/bin/env bash
# Integration: start the real braidd on a free port, ask it for health with the
# real `braid` CLI, check a bad flag is refused, then stop it with SIGTERM and
# check that it exits cleanly.
set -euo pipefail
braidd=$1
braid=$2
dir=$(dirname "$0")
. "$dir/lib.sh"

port=$(free_port)
addr="tcp://127.0.0.1:$port"
log=$(mktemp)
trap 'kill -9 $pid 2>/dev/null || true; rm -f "$log"' EXIT

"$braidd" --listen "$addr" --log-level debug >"$log" 2>&1 &
pid=$!
wait_for_health "$braid" "$addr" "$pid" "$log"

out=$("$braid" --address "$addr" health)
echo "$out"
grep -q '^status: SERVING$' <<<"$out"
grep -q '^version: ' <<<"$out"

# A bad flag is refused with a message and exit code 2.
set +e
"$braidd" --max-calls nope >/dev/null 2>"$log.err"
rc=$?
set -e
[ "$rc" -eq 2 ] || { echo "bad flag gave exit $rc"; exit 1; }
grep -q -- '--max-calls' "$log.err"
rm -f "$log.err"

# --help documents every option.
"$braidd" --help >"$log.help"
grep -q BRAID_LISTEN "$log.help"
rm -f "$log.help"

kill -TERM "$pid"
wait "$pid"
grep -q 'shutting down' "$log"
echo "PASS integration.health"
