#!/usr/bin/env bash
# Configures and builds into BUILD_DIR (default build/). Extra arguments go
# to cmake, e.g. scripts/build.sh build-asan -DAIRLLM_SANITIZE=ON
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/build}
shift || true
cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)" >/dev/null
