#!/usr/bin/env bash
# Batch and prefill benchmark for airllm-run (docs/benchmarks.md, "Batch and
# prefill"): the 7B-shaped nf4 model streamed (--mem-budget 0, from the page
# cache), this checkout's airllm-run against a baseline commit's, runs of
# the two interleaved so that both see the same load on a shared host.
#
#   scripts/bench_batch.sh
#
# Environment (and those of scripts/bench_env.sh):
#   BENCH_BASE   baseline commit (default c0f1e13), built once into
#                $BENCH_DIR/base-<commit> from `git archive` (no worktree)
#   BENCH_NF4    an nf4 directory to use (default: made from the 7B-shaped
#                BF16 checkpoint with airllm-split and airllm-quant)
#   BENCH_TOKENS decode steps per run (default 8)
#   BENCH_RUNS   runs per row and binary, the best kept (default 3)
# Rows: decode tokens/s (over the steps after the first, every sequence's
# tokens) at batch 1 and 16, and prefill tokens/s (prompt tokens / prefill
# time) at a 64- and a 128-token prompt. CPU s/token: user + system time
# of the whole run per token processed, which moves less than wall time
# when other jobs share the cores. Ratios: new / base for each row, and
# batch 16 / batch 1 for each binary (issue 13's target: >= 10). The rows
# marked "int8 act" run the new binary with --int8-activations (int8 dot
# products, lib/airllm_matmul_q8.c) against the same baseline rows.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"
TIME=/usr/bin/time
BASE=${BENCH_BASE:-c0f1e13}
RUNS=${BENCH_RUNS:-3}
NTOK=${BENCH_TOKENS:-8}
for t in airllm-split airllm-quant airllm-run; do [ -x "$BIN/$t" ] || die "no $BIN/$t"; done
mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/batchwork.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---- the baseline binary
BASEDIR=$BENCH_DIR/base-$BASE
if [ ! -x "$BASEDIR/build/airllm-run" ]; then
    echo "building the baseline $BASE into $BASEDIR"
    rm -rf "$BASEDIR"
    mkdir -p "$BASEDIR/src"
    git -C "$ROOT" archive "$BASE" | tar -x -C "$BASEDIR/src" || die "cannot export $BASE"
    cmake -S "$BASEDIR/src" -B "$BASEDIR/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DAIRLLM_CUDA=OFF >/dev/null || die "cannot configure $BASE"
    cmake --build "$BASEDIR/build" -j "$(nproc)" --target airllm-run >/dev/null ||
        die "cannot build $BASE"
fi
BASEBIN=$BASEDIR/build/airllm-run
NEWBIN=$BIN/airllm-run

# ---- the model
bench_nf4 "$WORK"
cat "$D"/*.airc >/dev/null # warm the page cache

# ---- inputs
seq_ids() { python3 -c "import sys; print(','.join(str(100 + i) for i in range(int(sys.argv[1]))))" "$1"; }
: >"$WORK/p16"
for i in $(seq 16); do echo "ids:1,$((100 + i)),$((200 + i))" >>"$WORK/p16"; done

# run BIN OUT ARGS...: one run, appends "tok/s cpu_s_per_token" to OUT.
# MODE decode: tokens_per_second, tokens = steps * sequences; MODE prefill: the
# prompt length over prefill_s, tokens = the prompt.
run() {
    local bin=$1 out=$2 mode=$3 plen=$4
    shift 4
    sync
    "$TIME" -f '%U %S' -o "$WORK/cpu" "$bin" -q --json --mem-budget 0 "$@" "$D" \
        >"$WORK/out.json" 2>"$WORK/err" || { cat "$WORK/err" >&2; die "airllm-run failed: $*"; }
    python3 - "$WORK/out.json" "$WORK/cpu" "$mode" "$plen" >>"$out" <<'EOF'
import json, sys
# The summary is the last JSON object: a JSON Lines summary line now, one
# pretty-printed object (timings.tokens_per_s, results[]) before 776a7a3.
text, dec, objs, i = open(sys.argv[1]).read(), json.JSONDecoder(), [], 0
while i < len(text):
    if text[i].isspace():
        i += 1
        continue
    o, i = dec.raw_decode(text, i)
    objs.append(o)
t = objs[-1]
cpu = sum(float(v) for v in open(sys.argv[2]).read().split()[-2:])
mode, plen = sys.argv[3], int(sys.argv[4])
tm = t["timings"]
if mode == "prefill":
    print(plen / tm["prefill_s"], cpu / plen)
elif "tokens_per_second" in t:
    print(t["tokens_per_second"], cpu / (t["steps"] * t["sequences"]))
else:
    print(tm["tokens_per_s"], cpu / tm["tokens_generated"])
EOF
}

# label|mode|prompt length|arguments|the new binary's extra arguments
I8=--int8-activations
ROWS=("batch 1 decode|decode|0|--ids 1,2,3 -n $NTOK|"
      "batch 16 decode|decode|0|--prompts $WORK/p16 -n $NTOK|"
      "prefill, 64-token prompt|prefill|64|--ids $(seq_ids 64) -n 1|"
      "prefill, 128-token prompt|prefill|128|--ids $(seq_ids 128) -n 1|"
      "batch 1, int8 act|decode|0|--ids 1,2,3 -n $NTOK|$I8"
      "batch 16, int8 act|decode|0|--prompts $WORK/p16 -n $NTOK|$I8"
      "prefill 64, int8 act|prefill|64|--ids $(seq_ids 64) -n 1|$I8"
      "prefill 128, int8 act|prefill|128|--ids $(seq_ids 128) -n 1|$I8")
echo "host:  $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); model $D"
echo "base:  $BASE ($BASEBIN)"
echo "new:   $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo +dirty) ($NEWBIN)"
printf '\n%-28s %10s %10s %7s %12s %12s %7s\n' "row (7B nf4, --mem-budget 0)" "base tok/s" "new tok/s" "new/base" "base CPU s/t" "new CPU s/t" "CPU b/n"
i=0
for row in "${ROWS[@]}"; do
    IFS='|' read -r label mode plen args newargs <<<"$row"
    : >"$WORK/base.$i"
    : >"$WORK/new.$i"
    for r in $(seq "$RUNS"); do
        # shellcheck disable=SC2086 # args is a word list
        run "$BASEBIN" "$WORK/base.$i" "$mode" "$plen" $args
        # shellcheck disable=SC2086
        run "$NEWBIN" "$WORK/new.$i" "$mode" "$plen" $args $newargs
    done
    python3 - "$WORK/base.$i" "$WORK/new.$i" "$label" <<'EOF'
import sys
def best(p):
    rows = [tuple(map(float, l.split())) for l in open(p) if l.strip()]
    return max(r[0] for r in rows), min(r[1] for r in rows)
(bt, bc), (nt, nc) = best(sys.argv[1]), best(sys.argv[2])
print("%-28s %10.2f %10.2f %7.2fx %12.4f %12.4f %6.2fx" % (sys.argv[3], bt, nt, nt / bt, bc, nc, bc / nc))
EOF
    i=$((i + 1))
done | tee "$WORK/table"
python3 - "$WORK/table" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.startswith("batch")]
b1, b16, b1i, b16i = rows[0], rows[1], rows[2], rows[3]
# columns from the end: base tok/s, new tok/s, ratio, base cpu, new cpu, cpu ratio
f = lambda r, i: float(r[-6 + i].rstrip("x"))
print("\nbatch 16 / batch 1 tokens/s: base %.2fx, new %.2fx, new with int8 act (both "
      "rows) %.2fx, int8 act batch 16 / float batch 1 %.2fx (target >= 10x)"
      % (f(b16, 0) / f(b1, 0), f(b16, 1) / f(b1, 1), f(b16i, 1) / f(b1i, 1),
         f(b16i, 1) / f(b1, 1)))
EOF
echo "tok/s: best of $RUNS runs per binary, the two interleaved; CPU s/t: the lowest."
