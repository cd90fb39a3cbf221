#!/usr/bin/env bash
# Zero-copy streaming against resident (docs/benchmarks.md, "Streaming from
# the page cache"): ms/token of airllm-run streamed (--mem-budget 0) from a
# warm page cache, mapped (the default) and copied with pread
# (AIRLLM_STREAM_READ=pread), with the default thread split and with -t 1 /
# -t 2 (or -t N for all cores), --verify-load fast and off, each as a ratio
# to the resident run measured in the same run. Configurations are
# interleaved round by round so drift of a shared machine hits them alike;
# the best round of each is kept.
#
#   scripts/bench_stream.sh
#
# Environment: AIRLLM_BIN, BENCH_DIR, BENCH_LAYERS (default here 8) as in
# scripts/bench_env.sh; BENCH_RUNS rounds (default 3); BENCH_TOKENS tokens
# per run (default 32 SmolLM2, 8 7B); BENCH_ONLY=smol|7b for one model.
set -euo pipefail
BENCH_LAYERS=${BENCH_LAYERS:-8}
. "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"
for t in airllm-split airllm-quant airllm-run; do [ -x "$BIN/$t" ] || die "no $BIN/$t"; done
RUNS=${BENCH_RUNS:-3}
NP=$(nproc)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/benchstream.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ONLY=${BENCH_ONLY:-}
if [ "$ONLY" != smol ]; then
    bench_checkpoint
    Q7=$BENCH_DIR/llama7b-nf4-L$LAYERS-v12
    [ -f "$Q7/manifest.json" ] || "$BIN/airllm-quant" -q -f "$HF7" "$Q7"
fi
if [ "$ONLY" != 7b ]; then
    SMOL=$("$ROOT/scripts/fetch_smollm2.sh" | tail -n 1)
    S2=$WORK/smol
    "$BIN/airllm-split" -q "$SMOL" "$S2"
fi

echo "host: $NP CPUs; $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
# configurations: LABEL|ENV|ARGS (ENV: "-" for none)
CONFIGS=(
    "resident|-|"
    "mapped, fast, default -t|-|--mem-budget 0"
    "mapped, fast, -t 1|-|--mem-budget 0 -t 1"
    "mapped, fast, -t $NP|-|--mem-budget 0 -t $NP"
    "mapped, off, default -t|-|--mem-budget 0 --verify-load=off"
    "mapped, off, -t 1|-|--mem-budget 0 --verify-load=off -t 1"
    "mapped, off, -t $NP|-|--mem-budget 0 --verify-load=off -t $NP"
    "pread, fast, default -t|AIRLLM_STREAM_READ=pread|--mem-budget 0"
    "pread, off, default -t|AIRLLM_STREAM_READ=pread|--mem-budget 0 --verify-load=off"
)
# model LABEL DIR TOKENS
model() {
    local label=$1 dir=$2 n=$3 r i
    : >"$WORK/t"
    "$BIN/airllm-run" -q --ids 1,2,3 -n 2 --mem-budget 0 "$dir" >/dev/null # warm the cache
    for r in $(seq "$RUNS"); do
        for i in "${!CONFIGS[@]}"; do
            IFS='|' read -r _ env args <<<"${CONFIGS[$i]}"
            [ "$env" = - ] && env=
            # shellcheck disable=SC2086
            env $env "$BIN/airllm-run" -q --json --ids 1,2,3,4,5 -n "$n" $args "$dir" \
                >"$WORK/o.json" || die "airllm-run failed: $label ${CONFIGS[$i]}"
            python3 -c 'import json,sys; t=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(sys.argv[2], 1000.0 / t["tokens_per_second"])' \
                "$WORK/o.json" "$i" >>"$WORK/t"
        done
    done
    printf '%s\n' "${CONFIGS[@]}" >"$WORK/c"
    python3 - "$WORK/t" "$WORK/c" "$label" <<'EOF2'
import sys
best = {}
for line in open(sys.argv[1]):
    i, v = line.split()
    best[int(i)] = min(best.get(int(i), 1e30), float(v))
labels = [l.split("|")[0] for l in open(sys.argv[2]).read().splitlines()]
print("%s" % sys.argv[3])
print("  %-32s %10s %10s" % ("run", "ms/token", "x resident"))
for i, l in enumerate(labels):
    print("  %-32s %10.2f %10.2f" % (l, best[i], best[i] / best[0]))
EOF2
}
T=${BENCH_TOKENS:-}
[ "$ONLY" = 7b ] || model "SmolLM2-135M BF16" "$S2" "${T:-32}"
[ "$ONLY" = smol ] || model "7B-shaped ${LAYERS}-layer nf4" "$Q7" "${T:-8}"
# The arithmetic of the fast check on mapped units: XXH3 and a plain read
# over one cached layer and the head, and bytes loaded per token.
if [ "$ONLY" != smol ]; then
    "${CC:-cc}" -O2 -o "$WORK/xxh3_map" "$ROOT/scripts/xxh3_map.c" -lxxhash ||
        die "cannot compile xxh3_map.c"
    "$WORK/xxh3_map" "$Q7/layer.00000.airc" "$Q7/lm_head.airc"
    "$BIN/airllm-run" -q --json --ids 1,2,3,4,5 -n 8 --mem-budget 0 "$Q7" >"$WORK/o.json"
    python3 -c 'import json,sys; t=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print("7B streamed: %.1f MiB loaded per step (bytes_read %d over %d steps)" % (t["bytes_read"] / 2**20 / t["steps"], t["bytes_read"], t["steps"]))' "$WORK/o.json"
fi
