#!/usr/bin/env bash
# gen_proto.sh - generates clients/python/braid/braid_pb2.py from proto/braid.proto
# with the system protoc (Debian's protobuf-compiler). The generated module is
# committed so that `pip install clients/python` needs no protoc.
#
#   gen_proto.sh            regenerate braid/braid_pb2.py in place
#   gen_proto.sh --check    regenerate into a temporary directory and fail (exit 1)
#                           when the committed module differs: it is out of date
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
protoc=${PROTOC:-protoc}
command -v "$protoc" >/dev/null || { echo "gen_proto.sh: protoc not found (apt-get install protobuf-compiler)" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$protoc" -I "$root/proto" --python_out="$tmp" "$root/proto/braid.proto"

if [ "${1:-}" = "--check" ]; then
  if diff -u "$here/braid/braid_pb2.py" "$tmp/braid_pb2.py"; then
    echo "braid_pb2.py is up to date with proto/braid.proto"
  else
    echo "braid_pb2.py is out of date: run clients/python/gen_proto.sh and commit the result" >&2
    exit 1
  fi
else
  cp "$tmp/braid_pb2.py" "$here/braid/braid_pb2.py"
  echo "wrote $here/braid/braid_pb2.py"
fi
