#!/usr/bin/env bash
# Installs the build and test dependencies from Debian's packages. Does
# nothing when they are all present already, so it is cheap to call first.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libzstd-dev libssl-dev libcjson-dev libxxhash-dev clang
      libclang-rt-dev python3 python3-jsonschema python3-venv zstd time openssl
      libmicrohttpd-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
