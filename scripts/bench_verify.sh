#!/usr/bin/env bash
# What the load checks cost (docs/benchmarks.md, "--verify-load"): ms/token
# of airllm-run with --verify-load=off, fast (XXH3 per tensor, the default)
# and full (SHA-256), resident and streamed (--mem-budget 0: page cache,
# and O_DIRECT, the case of a real SD card or disk),
# measured in the same run, the modes interleaved round by round so drift
# of this shared machine hits them alike; the best round of each is kept.
#
#   scripts/bench_verify.sh
#
# Environment: AIRLLM_BIN, BENCH_DIR, BENCH_LAYERS (default here 8) as in
# scripts/bench_env.sh; BENCH_RUNS rounds (default 3); BENCH_TOKENS tokens
# per run (default 32 SmolLM2, 8 7B).
set -euo pipefail
BENCH_LAYERS=${BENCH_LAYERS:-8}
. "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"
for t in airllm-split airllm-quant airllm-run; do [ -x "$BIN/$t" ] || die "no $BIN/$t"; done
RUNS=${BENCH_RUNS:-3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/benchverify.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
bench_checkpoint
SMOL=$("$ROOT/scripts/fetch_smollm2.sh" | tail -n 1)
Q7=$BENCH_DIR/llama7b-nf4-L$LAYERS-v12
[ -f "$Q7/manifest.json" ] || "$BIN/airllm-quant" -q -f "$HF7" "$Q7"
S2=$WORK/smol
"$BIN/airllm-split" -q "$SMOL" "$S2"

echo "host: $(nproc) CPUs; $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
printf '%-40s %10s %10s %10s %8s %8s\n' "run" "off ms" "fast ms" "full ms" "fast %" "full %"
# row LABEL DIR TOKENS ARGS...
row() {
    local label=$1 dir=$2 n=$3 r mode
    shift 3
    : >"$WORK/t"
    # one warm-up (page cache), then the rounds
    "$BIN/airllm-run" -q --ids 1,2,3 -n 2 "$@" "$dir" >/dev/null
    for r in $(seq "$RUNS"); do
        for mode in off fast full; do
            "$BIN/airllm-run" -q --json --ids 1,2,3,4,5 -n "$n" --verify-load=$mode "$@" "$dir" \
                >"$WORK/o.json" || die "airllm-run failed: $label $mode"
            python3 -c 'import json,sys; t=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(sys.argv[2], 1000.0 / t["tokens_per_second"])' \
                "$WORK/o.json" "$mode" >>"$WORK/t"
        done
    done
    python3 - "$WORK/t" "$label" <<'EOF'
import sys
best = {}
for line in open(sys.argv[1]):
    m, v = line.split()
    best[m] = min(best.get(m, 1e30), float(v))
o, f, u = best["off"], best["fast"], best["full"]
print("%-40s %10.2f %10.2f %10.2f %+7.1f%% %+7.1f%%" % (sys.argv[2], o, f, u, 100 * (f / o - 1), 100 * (u / o - 1)))
EOF
}
T=${BENCH_TOKENS:-}
row "SmolLM2 BF16, resident" "$S2" "${T:-32}"
row "SmolLM2 BF16, streamed (--mem-budget 0)" "$S2" "${T:-32}" --mem-budget 0
row "7B-shaped ${LAYERS}-layer nf4, resident" "$Q7" "${T:-8}"
row "7B-shaped ${LAYERS}-layer nf4, streamed" "$Q7" "${T:-8}" --mem-budget 0
row "7B-shaped ${LAYERS}-layer nf4, streamed --direct" "$Q7" "${T:-4}" --mem-budget 0 --direct
