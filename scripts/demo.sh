#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build, then convert
# the bundled tiny Llama checkpoint and verify the result byte for byte.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$root/../shared/models/stories260K}
out=${2:-$root/build/demo/stories260K}
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
rm -rf "$out"
echo "== airllm-split $model $out"
"$root/build/airllm-split" "$model" "$out"
echo "== airllm-verify --against $model $out"
"$root/build/airllm-verify" --against "$model" "$out"
echo "== result"
ls -l "$out"
