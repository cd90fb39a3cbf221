#!/usr/bin/env bash
# Benchmark of airllm-run --device cuda (docs/benchmarks.md, "CUDA"). Run it
# on the GPU machine (the device tool): it needs a CUDA build and a GPU.
#
#   scripts/bench_cuda.sh            (AIRLLM_BIN, BENCH_DIR, BENCH_LAYERS,
#                                     BENCH_TOKENS as scripts/bench_run.sh)
#
# Bounds, measured in the same run by scripts/gpubw.cu:
#   h2d: pinned host-to-device copy rate; streamed bound = h2d / weight
#        bytes copied per token (the units a ~2-layer VRAM budget streams);
#   hbm: device read rate of a 16-byte-load sum kernel; resident bound =
#        hbm / weight bytes per token.
# Runs, on the 7B-shaped synthetic checkpoint (bf16 and nf4):
#   streamed from the host page cache (--mem-budget 0: each layer is read
#   from the page cache into a pinned slot, then copied), streamed from
#   pinned host RAM (--mem-budget all), and resident (VRAM holds every
#   layer). Peak VRAM: the backend's own allocations and the device's used
#   memory at the peak (CUDA context included), from --json.
set -euo pipefail
BENCH_DIR=${BENCH_DIR:-/tmp/bench-data}
. "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"
TOK=${BENCH_TOKENS:-16}
mkdir -p "$BENCH_DIR"
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
for t in airllm-split airllm-quant airllm-run; do [ -x "$BIN/$t" ] || die "no $BIN/$t"; done
nvcc -O2 -o "$BENCH_DIR/gpubw" "$ROOT/scripts/gpubw.cu" || die "cannot build gpubw"
BW=$("$BENCH_DIR/gpubw" 1024) || die "gpubw failed (no GPU?)"
H2D=$(echo "$BW" | awk '/^h2d/ {print $2}')
HBM=$(echo "$BW" | awk '/^hbm/ {print $2}')
nvidia-smi --query-gpu=name,memory.total,pcie.link.gen.current,pcie.link.width.current \
    --format=csv,noheader || true
echo "h2d (pinned): $H2D GB/s; hbm (read): $HBM GB/s"

bench_checkpoint
[ -f "$BENCH_DIR/bf16/manifest.json" ] || "$BIN/airllm-split" -q -j "$(nproc)" "$HF7" "$BENCH_DIR/bf16"
[ -f "$BENCH_DIR/nf4/manifest.json" ] ||
    "$BIN/airllm-quant" -q -j "$(nproc)" -t nf4 -b 64 "$BENCH_DIR/bf16" "$BENCH_DIR/nf4"

# Bytes per token the device reads (every unit but the embedding, whose rows
# the host looks up) and the largest unit (a ~2-layer budget is two of it).
sizes() {
    python3 - "$1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1] + "/manifest.json"))
u = [x for x in m["units"] if "file" in x and x["kind"] != "embed"]
print(sum(x["size"] for x in u), max(x["size"] for x in u))
PY
}

printf '\n%-40s %8s %8s %8s %8s %10s %10s\n' run tok/s bound ratio ms/tok "peak MiB" "dev MiB"
measure() { # LABEL DIR BOUND_GBS BYTES ARGS...
    local label=$1 dir=$2 gbs=$3 bytes=$4
    shift 4
    "$BIN/airllm-run" -q --json --device cuda --ids 1,2,3,4 -n "$TOK" "$@" "$dir" >"$BENCH_DIR/out.json" ||
        die "$label: airllm-run failed"
    python3 - "$BENCH_DIR/out.json" "$label" "$gbs" "$bytes" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().splitlines()[-1])  # the summary line
label, gbs, b = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
g = j["gpu"]
tps = j["tokens_per_second"]
bound = gbs * 1e9 / b
print("%-40s %8.2f %8.2f %8.2f %8.1f %10.0f %10.0f" % (label, tps, bound, tps / bound,
      1000 / tps if tps else 0, g["peak_bytes"] / 2**20, g["peak_device_used"] / 2**20))
PY
}
for enc in bf16 nf4; do
    d=$BENCH_DIR/$enc
    read -r bytes largest < <(sizes "$d")
    two=$(( (2 * largest + 64 * 1048576) / 1048576 ))M
    cat "$d"/*.airc >/dev/null # warm the page cache
    measure "$enc streamed, page cache (gpu $two)" "$d" "$H2D" "$bytes" --gpu-mem-budget "$two" --mem-budget 0
    measure "$enc streamed, pinned RAM (gpu $two)" "$d" "$H2D" "$bytes" --gpu-mem-budget "$two" --mem-budget 1000G
    measure "$enc streamed, no prefetch (gpu $two)" "$d" "$H2D" "$bytes" --gpu-mem-budget "$two" --mem-budget 0 --no-prefetch
    measure "$enc resident" "$d" "$HBM" "$bytes" --mem-budget 0
done
