#!/usr/bin/env bash
# Benchmark for airllm-run (docs/benchmarks.md, "airllm-run").
#
#   scripts/bench_run.sh
#
# Environment:
#   AIRLLM_BIN   directory holding the tools (default build)
#   BENCH_DIR    work directory (default /work/bench-data); the 7B-shaped
#                checkpoint of scripts/bench_split.sh is reused from there
#   BENCH_LAYERS layers of that checkpoint (default 32)
#   BENCH_TOKENS tokens generated per measurement (default 64 for SmolLM2
#                resident, 32 streamed, 4 for 7B)
#   BENCH_RUNS   runs per row, the best kept (default 2)
#
# Bounds, measured in the same run:
#   memory:  scripts/membw.c, a multi-threaded sum over 1 GiB (GB/s), right
#            before and after each resident run, the higher kept;
#            resident bound = that rate / weight bytes read per token;
#   disk:    dd iflag=direct of the 7B nf4 unit files (O_DIRECT bound), and
#            dd of the same files warm in the page cache (page-cache bound);
#            streamed bound = rate / bytes read per token.
# Weight bytes per token: every unit file but the embeddings (rows only),
# which count when the LM head is tied to them. tokens/s is over the steps
# after the first (decode); peak RSS from /usr/bin/time.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"
TIME=/usr/bin/time
for t in airllm-split airllm-quant airllm-run; do [ -x "$BIN/$t" ] || die "no $BIN/$t"; done
[ -f "$HF7/model.safetensors.index.json" ] || die "no $HF7: run scripts/bench_split.sh first"
WORK=$(mktemp -d "$BENCH_DIR/runwork.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cc -O3 -march=native -pthread -o "$WORK/membw" "$ROOT/scripts/membw.c" || die "cannot build membw"
MEMBW=$("$WORK/membw" 1024 "$(nproc)" 2>/dev/null)
SMOL=$("$ROOT/scripts/fetch_smollm2.sh" | tail -n 1)
SMOL32=$("$ROOT/scripts/fetch_smollm2.sh" --dtype f32 | tail -n 1)

echo "host:   $(nproc) CPUs, $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
echo "memory: $MEMBW GB/s (membw, $(nproc) threads)"

# Per-token weight bytes of a converted directory (see above).
per_token() {
    python3 - "$1" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1] + "/manifest.json"))
units = m["units"]
tied = any("tied_to" in u for u in units)
print(sum(u["size"] for u in units if "file" in u and (u["kind"] != "embed" or tied)))
EOF
}

# measure LABEL DIR BYTES_PER_TOKEN BOUND_GBS ARGS...: prints a table row,
# the best of BENCH_RUNS runs (default 2) by ratio (by tok/s without a
# bound), with the highest peak RSS of the runs. BOUND_GBS "mem": the
# memory rate measured right before and right after each run, the higher
# kept. This VM's memory bandwidth drifts by a third within minutes (other
# guests), so a rate taken once at the start made the ratios of later rows
# depend on the drift more than on the runner.
RUNS=${BENCH_RUNS:-2}
printf '\n%-44s %9s %9s %9s %7s %8s %7s\n' "run" "tok/s" "bound" "ratio" "ms/tok" "RSS MiB" "GB/s"
measure() {
    local label=$1 dir=$2 bpt=$3 gbs0=$4 gbs before r
    shift 4
    : >"$WORK/runs"
    for r in $(seq "$RUNS"); do
        sync
        gbs=$gbs0
        [ "$gbs0" = mem ] && before=$("$WORK/membw" 1024 "$(nproc)" 2>/dev/null)
        "$TIME" -f '%M' -o "$WORK/rss" "$BIN/airllm-run" -q --json "$@" "$dir" >"$WORK/out.json" 2>"$WORK/err" ||
            { cat "$WORK/err" >&2; die "airllm-run failed: $label"; }
        if [ "$gbs0" = mem ]; then
            gbs=$("$WORK/membw" 1024 "$(nproc)" 2>/dev/null)
            gbs=$(python3 -c "import sys; print(max(float(sys.argv[1]), float(sys.argv[2])))" "$before" "$gbs")
        fi
        python3 - "$WORK/out.json" "$gbs" "$(cat "$WORK/rss")" >>"$WORK/runs" <<'EOF'
import json, sys
t = json.loads(open(sys.argv[1]).read().splitlines()[-1])  # the summary line
print(t["tokens_per_second"], t["sequences"], sys.argv[2], sys.argv[3])
EOF
    done
    python3 - "$WORK/runs" "$bpt" "$label" <<'EOF'
import sys
bpt, label = float(sys.argv[2]), sys.argv[3]
rows = []
for line in open(sys.argv[1]):
    tps, n_seq, gbs, rss = line.split()
    tps, n_seq, gbs, rss = float(tps), int(n_seq), float(gbs), int(rss)
    bound = gbs * 1e9 / bpt * n_seq if gbs > 0 else 0
    rows.append((tps / bound if bound else tps, tps, bound, gbs, n_seq, rss))
ratio, tps, bound, gbs, n_seq, _ = max(rows)
rss = max(r[5] for r in rows)
print("%-44s %9.2f %9.2f %9s %7.1f %8.0f %7.1f" % (label, tps, bound, ("%.2f" % ratio) if bound else "-",
      1000.0 * n_seq / tps if tps else 0, rss / 1024, gbs))
EOF
}

# ---------------------------------------------------------------- (a) resident
"$BIN/airllm-split" -q -f "$SMOL32" "$WORK/smol-f32"
"$BIN/airllm-split" -q -f "$SMOL" "$WORK/smol-bf16"
"$BIN/airllm-quant" -q -f -t nf4 "$WORK/smol-bf16" "$WORK/smol-nf4"
"$BIN/airllm-quant" -q -f -t int8 "$WORK/smol-bf16" "$WORK/smol-int8"
N=${BENCH_TOKENS:-}
# nf4 with the (tied) embeddings quantized too: by default they stay BF16,
# and on SmolLM2 they are half of nf4's bytes per token.
"$BIN/airllm-quant" -q -f -t nf4 --include embed "$WORK/smol-bf16" "$WORK/smol-nf4e"
for v in f32 bf16 nf4 int8 nf4e; do
    d=$WORK/smol-$v
    measure "(a) SmolLM2 $v resident" "$d" "$(per_token "$d")" mem --ids 1,2,3 -n "${N:-64}"
done
"$BIN/airllm-split" -q -f "$HF7" "$WORK/l7-bf16"
"$BIN/airllm-quant" -q -f -t nf4 "$WORK/l7-bf16" "$WORK/l7-nf4"
"$BIN/airllm-quant" -q -f -t int8 "$WORK/l7-bf16" "$WORK/l7-int8"
for v in bf16 nf4 int8; do
    d=$WORK/l7-$v
    measure "(a) 7B $v resident" "$d" "$(per_token "$d")" mem --mem-budget 20G --ids 1,2,3 -n "${N:-4}"
done
rm -rf "$WORK/l7-bf16"

# ---------------------------------------------------------------- (b) streamed
D=$WORK/l7-nf4
BPT=$(per_token "$D")
files=$(ls "$D"/*.airc)
# Read rates of the same files with dd (8 MiB requests), each file on its
# own: warm in the page cache (read once first), and with O_DIRECT.
read_rate() { # DD_FLAGS...
    local t0 t1
    t0=$(date +%s.%N)
    for f in $files; do dd if="$f" of=/dev/null bs=8M status=none "$@"; done
    t1=$(date +%s.%N)
    python3 -c "import os,sys; fs=sys.argv[3:]; print('%.2f' % (sum(os.path.getsize(f) for f in fs)/(float(sys.argv[2])-float(sys.argv[1]))/1e9))" "$t0" "$t1" $files
}
cat $files >/dev/null
CACHE_GBS=$(read_rate)
DIRECT_GBS=$(read_rate iflag=direct)
echo
echo "disk:   page cache $CACHE_GBS GB/s (dd, warm); O_DIRECT $DIRECT_GBS GB/s (dd iflag=direct)"
echo "7B nf4: $BPT bytes per token"
measure "(b) 7B nf4 streamed, page cache" "$D" "$BPT" "$CACHE_GBS" --mem-budget 0 --ids 1,2,3 -n "${N:-4}"
measure "(b) 7B nf4 streamed, O_DIRECT" "$D" "$BPT" "$DIRECT_GBS" --mem-budget 0 --direct --ids 1,2,3 -n "${N:-4}"
# ---------------------------------------------------------------- (c) batch
for b in 1 4 16; do
    : >"$WORK/prompts"
    for i in $(seq "$b"); do echo "ids:1,$((100 + i)),$((200 + i))" >>"$WORK/prompts"; done
    measure "(c) 7B nf4 streamed, batch $b" "$D" "$BPT" "$CACHE_GBS" --mem-budget 0 --prompts "$WORK/prompts" -n "${N:-4}"
done
# ---------------------------------------------------------------- (d) prefetch
measure "(d) 7B nf4 streamed, prefetch" "$D" "$BPT" "$CACHE_GBS" --mem-budget 0 --ids 1,2,3 -n "${N:-4}"
measure "(d) 7B nf4 streamed, --no-prefetch" "$D" "$BPT" "$CACHE_GBS" --mem-budget 0 --no-prefetch --ids 1,2,3 -n "${N:-4}"
measure "(d) 7B nf4 O_DIRECT, prefetch" "$D" "$BPT" "$DIRECT_GBS" --mem-budget 0 --direct --ids 1,2,3 -n "${N:-4}"
measure "(d) 7B nf4 O_DIRECT, --no-prefetch" "$D" "$BPT" "$DIRECT_GBS" --mem-budget 0 --direct --no-prefetch --ids 1,2,3 -n "${N:-4}"
S=$WORK/smol-bf16
measure "(d) SmolLM2 bf16 streamed, prefetch" "$S" "$(per_token "$S")" "$CACHE_GBS" --mem-budget 0 --ids 1,2,3 -n "${N:-32}"
measure "(d) SmolLM2 bf16 streamed, --no-prefetch" "$S" "$(per_token "$S")" "$CACHE_GBS" --mem-budget 0 --no-prefetch --ids 1,2,3 -n "${N:-32}"
echo
echo "bound: resident, memory GB/s / weight bytes per token; streamed, the read rate /"
echo "bytes per token (times the batch size: one read serves the batch); ratio = tok/s / bound."
