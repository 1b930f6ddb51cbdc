#!/usr/bin/env bash
# Installs every build and test dependency of Braidinfer on a Debian 12 machine:
# Debian packages for the C build, and a Python virtual environment (.venv, git-ignored)
# for the Python client and test tooling. Non-interactive and idempotent: a second run
# only reports what is already there.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf '[setup] %s\n' "$*"; }

debs=(
  build-essential cmake ninja-build pkg-config git
  libnng-dev libmbedtls-dev libprotobuf-c-dev protobuf-c-compiler
  libuv1-dev libcmocka-dev libpcre2-dev libcjson-dev
  protobuf-compiler python3 python3-venv python3-pip unzip openssl
)

missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  say "Debian packages: all ${#debs[@]} already installed"
else
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  say "Debian packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  say "Debian packages: installed ${#missing[@]}"
fi

nvcc=$(command -v nvcc || true)
[ -z "$nvcc" ] && [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] && nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
if [ -n "$nvcc" ]; then
  say "CUDA: nvcc found ($nvcc); the CUDA backend will be built"
else
  say "CUDA: nvcc not found; skipped (the build uses the CPU backend only; install the CUDA toolkit for the GPU backend)"
fi

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  say "Python: creating virtual environment $venv"
  python3 -m venv "$venv"
else
  say "Python: virtual environment $venv already exists"
fi
req="$here/deploy/requirements.txt"
if "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >/dev/null; then
  say "Python: requirements from deploy/requirements.txt satisfied"
else
  say "Python: pip install failed; check network access to PyPI"; exit 1
fi
say "done"
