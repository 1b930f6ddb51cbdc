#!/usr/bin/env bash
# Integration: braidd on tls+tcp:// end to end. Makes a throw-away CA and a
# server certificate (localhost, 127.0.0.1) with the openssl command line,
# starts braidd with --tls-cert/--tls-key, then checks that the braid CLI
# (libbraid) and the Python client (tls_client.py) get Health and a greedy
# generation over TLS; that a client without the CA file, with another CA or
# with a wrong server name is refused at once with a message naming the TLS
# handshake; and that plain tcp:// to the TLS port fails with a message while
# braidd keeps serving.
# Usage: test_tls.sh BRAIDD BRAID MODEL PYTHON
set -euo pipefail
braidd=$1 braid=$2 model=$3 python=$4
dir=$(cd "$(dirname "$0")" && pwd)
. "$dir/lib.sh"
[ -f "$model" ] || { echo "SKIP: no model at $model (deploy/fetch_model.sh)"; exit 77; }
command -v openssl >/dev/null || { echo "SKIP: no openssl command (Debian package openssl)"; exit 77; }

tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$tmp"' EXIT

echo "== certificates"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key "$tmp/ca.key"
openssl req -x509 -new -key "$tmp/ca.key" -out "$tmp/ca.pem" -days 1 -subj "/CN=braid test CA"
key "$tmp/other.key" # a CA that signed nothing of this server's
openssl req -x509 -new -key "$tmp/other.key" -out "$tmp/other.pem" -days 1 -subj "/CN=other CA"
key "$tmp/srv.key"
openssl req -new -key "$tmp/srv.key" -out "$tmp/srv.csr" -subj "/CN=localhost"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$tmp/ext"
openssl x509 -req -in "$tmp/srv.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
  -out "$tmp/srv.pem" -days 1 -extfile "$tmp/ext" 2>/dev/null

port=$(free_port)
addr="tls+tcp://127.0.0.1:$port"
log=$tmp/braidd.log
"$braidd" --listen "$addr" --tls-cert "$tmp/srv.pem" --tls-key "$tmp/srv.key" --model "$model" \
  --threads 2 >"$log" 2>&1 &
pid=$!
# The C client links mbedtls 2.x, which matches DNS names only: name the
# certificate's DNS entry (the Python client's nng also matches the IP entry).
export BRAID_TLS_CA=$tmp/ca.pem BRAID_TLS_SERVER_NAME=localhost
wait_for_health "$braid" "$addr" "$pid" "$log"
b() { "$braid" --address "$addr" "$@"; }

echo "== braid CLI over TLS"
b health | grep -q '^status: SERVING'
out=$(b generate --prompt 'What is the capital of France?' --max-tokens 8 2>"$tmp/usage")
[[ $out == *Paris* ]] || { echo "answer: '$out'"; exit 1; }
grep -Eq '^\[[0-9]+ tokens, prompt' "$tmp/usage"
echo "ok  health and a generation: $out"

# refused CMD_PATTERN ARGS...: braid ARGS must fail (exit 1) within 5 s
# although its timeout is 20 s, with the pattern in its message.
refused() {
  local pattern=$1 t0 rc=0
  shift
  t0=$(date +%s%N)
  "$braid" --timeout 20000 "$@" health >/dev/null 2>"$tmp/err" || rc=$?
  local ms=$((($(date +%s%N) - t0) / 1000000))
  [ "$rc" = 1 ] || { echo "braid $* exited $rc, not 1"; cat "$tmp/err"; exit 1; }
  grep -q -- "$pattern" "$tmp/err" || { echo "braid $*: no '$pattern' in:"; cat "$tmp/err"; exit 1; }
  [ "$ms" -lt 5000 ] || { echo "braid $* took $ms ms to fail"; exit 1; }
  echo "ok  refused in $ms ms: $(head -c 160 "$tmp/err")"
}
BRAID_TLS_CA='' refused 'needs a CA file' --address "$addr"
refused 'TLS handshake failed' --address "$addr" --tls-ca "$tmp/other.pem"
refused 'TLS handshake failed' --address "$addr" --tls-server-name evil.example
refused 'cannot load the CA file' --address "$addr" --tls-ca "$tmp/srv.key"
refused 'not a tls+tcp:// address' --address "tcp://127.0.0.1:$port"

echo "== plain tcp:// to the TLS port"
set +e
BRAID_TLS_CA='' BRAID_TLS_SERVER_NAME='' "$braid" --address "tcp://127.0.0.1:$port" \
  --timeout 1500 health >/dev/null 2>"$tmp/err"
rc=$?
set -e
[ "$rc" = 1 ] && grep -q 'drops the connection during the handshake' "$tmp/err" ||
  { echo "plain tcp:// exited $rc:"; cat "$tmp/err"; exit 1; }
echo "ok  $(head -c 200 "$tmp/err")"
b health | grep -q '^status: SERVING'

echo "== Python client over TLS"
PYTHONPATH="$dir/../../clients/python" "$python" "$dir/tls_client.py" "$addr" "$tmp/ca.pem" \
  "$tmp/other.pem"

b health | grep -q '^status: SERVING'
b stats | grep -Eq '^generations: [2-9]'
kill -TERM "$pid"
wait "$pid"
pid=
echo "PASS integration.tls"
