#!/usr/bin/env bash
# Load test of airllm-serve (docs/benchmarks.md, "airllm-serve"): the
# 7B-shaped nf4 model streamed (--mem-budget 0; from the page cache, then
# from the disk with O_DIRECT), the
# same REQUESTS completions sent one after another and at 4 and 16
# concurrent clients over loopback; aggregate tokens/s, latency p50/p99 and
# the ratio of each level's tokens/s to the sequential run's, all measured
# in this run (issue 15's target: 16 clients >= 8x one).
#
#   scripts/bench_serve.sh
#
# Environment (and those of scripts/bench_env.sh):
#   BENCH_NF4      an nf4 directory to use (default: made from the 7B-shaped
#                  BF16 checkpoint with airllm-split and airllm-quant)
#   BENCH_REQUESTS requests per level (default 16)
#   BENCH_TOKENS   new tokens per request (default 32)
#   BENCH_LEVELS   concurrency levels (default 1,4,16)
#   BENCH_MODES    where each step's layers come from (default "cache direct"):
#                  cache, the page cache, warmed first (the model fits in
#                  RAM); direct, the disk through O_DIRECT (--direct: what a
#                  model bigger than RAM gets, each step reading every layer)
#   BENCH_PLOT     a PNG of tokens/s against concurrency (default: none;
#                  needs matplotlib, installed into a venv under BENCH_DIR)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"
NREQ=${BENCH_REQUESTS:-16}
NTOK=${BENCH_TOKENS:-32}
LEVELS=${BENCH_LEVELS:-1,4,16}
MODES=${BENCH_MODES:-cache direct}
for t in airllm-split airllm-quant airllm-serve; do [ -x "$BIN/$t" ] || die "no $BIN/$t"; done
mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/servework.XXXXXX")
SPID=""
trap '[ -n "$SPID" ] && kill -TERM "$SPID" 2>/dev/null; rm -rf "$WORK"' EXIT

bench_nf4 "$WORK"
# serve_level MODE OPTS...: one server, the level sweep, rows in rows.MODE.json
serve_levels() {
    local mode=$1
    shift
    "$BIN/airllm-serve" --port 0 --mem-budget 0 --max-batch 16 --queue 256 "$@" "$D" \
        2>"$WORK/serve.err" &
    SPID=$!
    PORT=""
    for _ in $(seq 600); do
        PORT=$(sed -n 's/.*listening on http:.*:\([0-9]*\) .*/\1/p' "$WORK/serve.err")
        [ -n "$PORT" ] && break
        kill -0 "$SPID" 2>/dev/null || die "the server did not start: $(cat "$WORK/serve.err")"
        sleep 0.1
    done
    echo
    echo "== $mode: airllm-serve --mem-budget 0 $*"
    echo "model $D, $NREQ requests x $NTOK tokens per level, levels $LEVELS, $(nproc) cores," \
        "load average $(cut -d' ' -f1-3 /proc/loadavg)"
    python3 "$ROOT/scripts/bench_serve.py" "$PORT" 1 2 1 "$WORK/warm.json" >/dev/null # first touch
    python3 "$ROOT/scripts/bench_serve.py" "$PORT" "$NREQ" "$NTOK" "$LEVELS" "$WORK/rows.$mode.json"
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    kill -TERM "$SPID"
    wait "$SPID" || true
    SPID=""
}
for mode in $MODES; do
    case $mode in
    cache)
        cat "$D"/*.airc >/dev/null # warm the page cache
        serve_levels cache ;;
    direct) serve_levels direct --direct ;;
    *) die "BENCH_MODES: '$mode' is not cache or direct" ;;
    esac
done

if [ -n "${BENCH_PLOT:-}" ]; then
    venv=$BENCH_DIR/plot-venv
    [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import matplotlib" 2>/dev/null ||
        { python3 -m venv "$venv" && "$venv/bin/pip" install -q matplotlib; } ||
        die "cannot install matplotlib for the plot"
    "$venv/bin/python" - "$BENCH_PLOT" "$WORK" $MODES <<'PY'
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
label = {"cache": "from the page cache", "direct": "from disk (--direct)"}
fig, ax = plt.subplots(figsize=(5.5, 3.8))
for mode in sys.argv[3:]:
    rows = json.load(open(f"{sys.argv[2]}/rows.{mode}.json"))
    x = [r["concurrency"] for r in rows]
    y = [r["tokens_per_s"] for r in rows]
    line, = ax.plot(x, y, "o-", label=f"airllm-serve, {label[mode]}")
    ax.plot(x, [y[0] * c / x[0] for c in x], ":", color=line.get_color(),
            label=f"linear in clients ({mode})")
ax.set_xscale("log", base=2)
ax.set_xticks(x, [str(c) for c in x])
ax.set_xlabel("concurrent clients")
ax.set_ylabel("aggregate tokens/s")
ax.set_title("7B-shaped nf4, streamed (--mem-budget 0)")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(sys.argv[1], dpi=100)
PY
    echo "plot: $BENCH_PLOT"
fi
