#!/usr/bin/env bash
# Benchmark for airllm-quant on the Llama-2-7B-shaped BF16 checkpoint that
# scripts/bench_split.sh generates and keeps (about 13.5 GB).
#
#   scripts/bench_quant.sh
#
# Environment:
#   AIRLLM_BIN    directory holding airllm-quant (default build)
#   AIRLLM_BASE_BIN  a baseline build's directory (optional): each command
#                 is also run with its airllm-quant, right after the new one,
#                 and the "vs base" column gives new/base time
#   BENCH_DIR     work directory on the disk to measure (default /work/bench-data)
#   BENCH_LAYERS  decoder layers (default 32; must match the generated checkpoint)
#   BENCH_RUNS    runs of each measurement, best taken (default 2)
#   BENCH_JOBS    --jobs for airllm-quant (default: nproc)
#
# Measured in one run, each command after `sync`, page cache as it is:
#   baseline: cp of the shards to a fresh directory on the same disk, then
#             sync (airllm-quant fsyncs what it writes, so this is the fair
#             baseline; plain cp is printed too);
#   airllm-quant -t nf4 | fp4 | int8, nf4 --double-quant, and nf4 --jobs 1:
#             throughput as source bytes per second, ratio to the baseline
#             (target >= 0.8), output size / source size, bits per weight of
#             the quantized tensors, peak RSS.
# Wall time and peak RSS come from /usr/bin/time -f '%e %M'.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"
RUNS=${BENCH_RUNS:-2}
JOBS=${BENCH_JOBS:-$(nproc)}
QUANT=$BIN/airllm-quant
TIME=/usr/bin/time
[ -x "$QUANT" ] || die "no $QUANT (build first, or set AIRLLM_BIN)"
BASE=${AIRLLM_BASE_BIN:-}
if [ -n "$BASE" ]; then
    BASE=$(cd "$BASE" && pwd) || die "no directory $AIRLLM_BASE_BIN"
    [ -x "$BASE/airllm-quant" ] || die "no airllm-quant in $BASE"
fi
[ -x "$TIME" ] || die "no $TIME (apt-get install time)"
bench_checkpoint
mapfile -t SHARDS < <(ls "$HF7"/*.safetensors)
SRC_BYTES=$(stat -c %s "${SHARDS[@]}" | awk '{ s += $1 } END { printf "%.0f\n", s }')
WORK=$(mktemp -d "$BENCH_DIR/qwork.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

echo "host:        $(nproc) CPUs, $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
echo "disk:        $(df -P "$BENCH_DIR" | awk 'NR == 2 { print $1 " mounted on " $6 }')"
echo "checkpoint:  $HF7, ${#SHARDS[@]} shards, $SRC_BYTES bytes"
echo "tool:        $QUANT --jobs $JOBS"
[ -z "$BASE" ] || echo "baseline:    $BASE/airllm-quant"

# best_of CMD...: sync, run CMD $RUNS times (OUT removed first), keep the
# fastest; sets WALL (s) and RSS (KiB) from that run.
best_of() {
    WALL=""
    RSS=0
    for _ in $(seq "$RUNS"); do
        rm -rf "$WORK/out"
        sync
        if ! "$TIME" -f '%e %M' -o "$WORK/time" "$@" >"$WORK/log" 2>&1; then
            tail -n 20 "$WORK/log" >&2
            die "command failed: $*"
        fi
        read -r w r < <(tail -n 1 "$WORK/time")
        if [ -z "$WALL" ] || awk -v a="$w" -v b="$WALL" 'BEGIN { exit !(a < b) }'; then
            WALL=$w
            RSS=$r
        fi
    done
}

best_of sh -c "mkdir '$WORK/out' && cp ${SHARDS[*]} '$WORK/out/'"
CP=$WALL
best_of sh -c "mkdir '$WORK/out' && cp ${SHARDS[*]} '$WORK/out/' && sync"
CPS=$WALL
printf '\n%-28s %8s %9s %8s %8s %8s %8s %8s\n' "command" "wall s" "MB/s" "vs cp" "size" "bits/w" "RSS MiB" "vs base"
printf '%-28s %8.2f %9.0f %8s %8s %8s %8s\n' "cp" "$CP" "$(awk -v b="$SRC_BYTES" -v t="$CP" 'BEGIN { print b / t / 1e6 }')" "-" "1.000" "16" "-"
printf '%-28s %8.2f %9.0f %8s %8s %8s %8s\n' "cp + sync (baseline)" "$CPS" "$(awk -v b="$SRC_BYTES" -v t="$CPS" 'BEGIN { print b / t / 1e6 }')" "1.00" "1.000" "16" "-"

measure() {
    local label=$1
    shift
    local vs_base=-
    if [ -n "$BASE" ]; then
        best_of "$BASE/airllm-quant" -q --json "$@" "$HF7" "$WORK/out"
        local base_wall=$WALL
    fi
    best_of "$QUANT" -q --json "$@" "$HF7" "$WORK/out"
    [ -z "$BASE" ] || vs_base=$(awk -v a="$WALL" -v b="$base_wall" 'BEGIN { printf "%.2f", a / b }')
    read -r ratio bpw < <(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print(j["output_bytes"] / j["source_bytes"], j["quant"]["bits_per_weight"])' "$WORK/log")
    printf '%-28s %8.2f %9.0f %8.2f %8.3f %8.3f %8.0f %8s\n' "$label" "$WALL" \
        "$(awk -v b="$SRC_BYTES" -v t="$WALL" 'BEGIN { print b / t / 1e6 }')" \
        "$(awk -v c="$CPS" -v t="$WALL" 'BEGIN { print c / t }')" "$ratio" "$bpw" \
        "$(awk -v r="$RSS" 'BEGIN { print r / 1024 }')" "$vs_base"
}
measure "quant nf4 -j $JOBS" -t nf4 -j "$JOBS"
measure "quant fp4 -j $JOBS" -t fp4 -j "$JOBS"
measure "quant int8 -j $JOBS" -t int8 -j "$JOBS"
measure "quant nf4 --double-quant" -t nf4 --double-quant -j "$JOBS"
measure "quant nf4 -j 1" -t nf4 -j 1
echo
echo "vs cp: cp+sync time / airllm-quant time (>= 0.8 is the target: I/O-bound)."
echo "size: output bytes / source shard bytes (everything: quantized layers,"
echo "the BF16 embeddings, LM head and norms, headers, 4 KiB alignment)."
echo "bits/w: stored bits per weight over the quantized tensors only."
[ -z "$BASE" ] || echo "vs base: airllm-quant time / the baseline's, same command, same run."
