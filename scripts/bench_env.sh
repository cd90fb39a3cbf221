# Sourced by scripts/bench_*.sh: where the tools and the work directory are,
# and the Llama-2-7B-shaped BF16 checkpoint the benchmarks share.
#   AIRLLM_BIN    directory holding the tools (default build; a relative path
#                 is taken from the checkout)
#   BENCH_DIR     work directory (default /work/bench-data; a script may set
#                 its own default before sourcing this file)
#   BENCH_LAYERS  decoder layers of the checkpoint (default 32)
# Sets ROOT, BIN, BENCH_DIR, LAYERS and HF7 (the checkpoint's directory), and
# defines die (the message after the script's name, exit 1),
# bench_checkpoint and bench_nf4.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${AIRLLM_BIN:-$ROOT/build}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
BENCH_DIR=${BENCH_DIR:-/work/bench-data}
LAYERS=${BENCH_LAYERS:-32}
HF7=$BENCH_DIR/llama7b-bf16-L$LAYERS

die() { echo "$(basename "$0" .sh): $*" >&2; exit 1; }

# Generates the checkpoint with scripts/gen_llama7b.c unless HF7 holds one.
bench_checkpoint() {
    [ -f "$HF7/model.safetensors.index.json" ] && return 0
    echo "no checkpoint at $HF7: generating it with scripts/gen_llama7b.c"
    mkdir -p "$BENCH_DIR"
    local gen
    gen=$(mktemp)
    "${CC:-cc}" -O2 -o "$gen" "$ROOT/scripts/gen_llama7b.c" || die "cannot compile gen_llama7b.c"
    rm -rf "$HF7"
    "$gen" "$HF7" --layers "$LAYERS" || { rm -f "$gen"; die "gen_llama7b failed"; }
    rm -f "$gen"
}

# bench_nf4 WORK: sets D to $BENCH_NF4 when given, else to an nf4 directory
# (block 64) made under WORK from the checkpoint with airllm-split and
# airllm-quant.
bench_nf4() {
    if [ -n "${BENCH_NF4:-}" ]; then
        D=$BENCH_NF4
        return 0
    fi
    bench_checkpoint
    "$BIN/airllm-split" -q -f "$HF7" "$1/l7-bf16"
    "$BIN/airllm-quant" -q -f -t nf4 "$1/l7-bf16" "$1/l7-nf4"
    rm -rf "$1/l7-bf16"
    D=$1/l7-nf4
}
