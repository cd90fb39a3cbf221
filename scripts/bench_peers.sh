#!/usr/bin/env bash
# Side-by-side benchmark of airllm-run against llama.cpp and AirLLM
# (issue 13; docs/benchmarks.md, "Against llama.cpp and AirLLM"). One run,
# the same weights, prompt and thread count on both sides; prints one table
# of ratios.
#
#   scripts/bench_peers.sh [--check]
#
# --check: a quick pass that proves the script works (SmolLM2 only, 8
# tokens, a 16-token prompt, one run, AirLLM for 3 tokens, no scarce-RAM
# case); its figures mean nothing.
#
# Cases (rows):
#   (a) resident, SmolLM2-135M and the Llama-2-7B-shaped checkpoint of
#       scripts/bench_env.sh: airllm-run bf16, int8 and nf4 (block 32 both)
#       with --mem-budget 100G against llama.cpp F16 (and BF16), Q8_0 and
#       Q4_0 GGUFs of the same weights, and int8e (int8 with the embeddings
#       and LM head quantized too, as the Q8_0 GGUF has them) against Q8_0,
#       and nf4h (nf4 layers with the embeddings and LM head in int8:
#       airllm-quant --include embed=int8,lm_head=int8, as llama.cpp keeps
#       a Q4_0 model's token_embd and output in 8 bits) against Q4_0;
#       quantized ones also with --int8-activations (llama.cpp's Q8_0 and
#       Q4_0 round activations to int8); decode tok/s over BENCH_TOKENS
#       greedy steps after the first (prompt ids 1,2,3), prefill tok/s of a
#       BENCH_PROMPT-token prompt.
#   (b) bigger than RAM: the 7B-shaped bf16 model, airllm-run --mem-budget 0
#       against llama.cpp F16 with mmap (its default), while a helper process
#       mlock()s all but BENCH_SCARCE_FREE bytes of MemAvailable; s/token.
#   (c) streamed from the page cache: airllm-run --mem-budget 0 bf16, as it
#       ships (the fast load check) and with --verify-load=off (AirLLM
#       checks nothing), against AirLLM 4.0.0 (PyPI) on CPU, as it ships
#       and with gc.collect made a no-op at run time (AirLLM calls it after
#       every layer); tok/s.
# Ratio: airllm-run's speed over the peer's (> 1: airllm-run is faster).
#
# Peers are installed from PyPI into virtual environments under BENCH_DIR
# and reused: peers-venv (llama-cpp-python, built from its sdist by pip,
# with gguf and numpy) and peers-airllm-venv (airllm and torch). A peer whose
# install fails is reported and its rows are skipped. GGUFs and AirLLM's
# layer shards and the airllm containers are cached in $BENCH_DIR/peers/
# (about 20 GB with the 8-layer 7B-shaped model).
#
# Environment (and those of scripts/bench_env.sh; BENCH_LAYERS defaults to 8
# here):
#   BENCH_THREADS  compute threads on both sides (default 2); airllm-run
#                  streamed rows use its default split (one thread fewer,
#                  for the prefetch thread)
#   BENCH_TOKENS   decode steps (default 64)      BENCH_PROMPT  prefill (128)
#   BENCH_RUNS     runs per row, interleaved, the best kept (default 2)
#   BENCH_CASES    which of a,b,c to run (default abc)
#   BENCH_MODELS   smol and/or 7b for (a) and (c) (default "smol 7b")
#   BENCH_PAIRS    (a)'s pairs, OURS:THEIRS (default all six, below)
#   BENCH_SCARCE_FREE   bytes left free in (b) (default: see below)
#   BENCH_SCARCE_TOKENS decode steps in (b) (default 5)
#   BENCH_AIRLLM_TOKENS tokens AirLLM generates in (c) (default 8)
#   LLAMA_CPP_PY_VERSION (0.3.36)   AIRLLM_PY_VERSION (4.0.0)
#   LLAMA_CMAKE_ARGS    CMAKE_ARGS of the llama-cpp-python build (default:
#                       GGML_NATIVE=ON, no tests, examples or tools)
# (b)'s free memory: a real Llama-2-7B in BF16 is 13.48 GB, so "~5 GB free"
# leaves 37% of it in RAM; the default scales that to this checkpoint:
# free = checkpoint bytes * 5 / 13.48 (1.39 GB for the 8-layer 3.76 GB one).
set -euo pipefail
shopt -s inherit_errexit # a die inside $(...) ends the script
: "${BENCH_LAYERS:=8}"
export BENCH_LAYERS
. "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"
PY=$ROOT/scripts/bench_peers.py
THREADS=${BENCH_THREADS:-2}
export BENCH_THREADS=$THREADS
NTOK=${BENCH_TOKENS:-64}
PLEN=${BENCH_PROMPT:-128}
RUNS=${BENCH_RUNS:-2}
CASES=${BENCH_CASES:-abc}
MODELS=${BENCH_MODELS:-smol 7b}
SCARCE_TOKENS=${BENCH_SCARCE_TOKENS:-5}
AIR_TOKENS=${BENCH_AIRLLM_TOKENS:-8}
LLAMA_V=${LLAMA_CPP_PY_VERSION:-0.3.36}
AIRLLM_V=${AIRLLM_PY_VERSION:-4.0.0}
case ${1:-} in
    --check) NTOK=8 PLEN=16 RUNS=1 CASES=ac MODELS=smol AIR_TOKENS=3 ;;
    "") ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $(basename "$0") [--check]" >&2; exit 2 ;;
esac
for t in airllm-split airllm-quant airllm-run; do [ -x "$BIN/$t" ] || die "no $BIN/$t (build first)"; done
mkdir -p "$BENCH_DIR/peers"
CACHE=$BENCH_DIR/peers
WORK=$(mktemp -d "$BENCH_DIR/peerswork.XXXXXX")
MLOCK_PID=
cleanup() {
    if [ -n "$MLOCK_PID" ]; then kill "$MLOCK_PID" 2>/dev/null || true; wait "$MLOCK_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
note() { echo "bench_peers: $*" >&2; }

# ---------------------------------------------------------------- peers
# Each venv is kept while its imports work; a failed install leaves the
# reason in LLAMA_SKIP / AIRLLM_SKIP and the rows that need it are skipped.
LVENV=$BENCH_DIR/peers-venv
AVENV=$BENCH_DIR/peers-airllm-venv
LLAMA_SKIP=
AIRLLM_SKIP=
venv_install() { # VENV LOG CHECK PIP_ARGS...: kept while CHECK passes and
    # the build's CMAKE_ARGS are those it was made with (venv/bench-cmake-args)
    local venv=$1 log=$2 check=$3
    shift 3
    if "$venv/bin/python" -c "$check" 2>/dev/null &&
        [ "$(cat "$venv/bench-cmake-args" 2>/dev/null)" = "${CMAKE_ARGS:-}" ]; then
        return 0
    fi
    note "installing $* into $venv (log: $log; llama-cpp-python builds llama.cpp from source, 20-40 min here)"
    rm -rf "$venv"
    python3 -m venv "$venv" >"$log" 2>&1 && "$venv/bin/pip" install "$@" >>"$log" 2>&1 &&
        "$venv/bin/python" -c "$check" >>"$log" 2>&1 &&
        echo "${CMAKE_ARGS:-}" >"$venv/bench-cmake-args"
}
if [[ $CASES == *[ab]* ]]; then
    # GGML_NATIVE: llama.cpp compiled for this CPU (AVX-512 and all), as
    # airllm-run's kernels are dispatched for it. LLAMA_CMAKE_ARGS replaces
    # these (e.g. an AMX-free build, docs/benchmarks.md); a change rebuilds.
    if ! CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
        CMAKE_ARGS=${LLAMA_CMAKE_ARGS:-"-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAVA_BUILD=OFF -DLLAMA_CURL=OFF"} \
        venv_install "$LVENV" "$BENCH_DIR/peers-venv-build.log" \
        "import llama_cpp, gguf, numpy; assert llama_cpp.__version__ == '$LLAMA_V'" \
        --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_V" "gguf==0.17.1" numpy safetensors; then
        LLAMA_SKIP="pip could not install llama-cpp-python $LLAMA_V ($(tail -n 1 "$BENCH_DIR/peers-venv-build.log" 2>/dev/null); log $BENCH_DIR/peers-venv-build.log)"
        note "skipping llama.cpp rows: $LLAMA_SKIP"
    fi
fi
if [[ $CASES == *c* ]]; then
    if ! venv_install "$AVENV" "$BENCH_DIR/peers-airllm-venv-build.log" \
        "import airllm, torch; from importlib.metadata import version; assert version('airllm') == '$AIRLLM_V'" \
        "airllm==$AIRLLM_V"; then
        AIRLLM_SKIP="pip could not install airllm $AIRLLM_V ($(tail -n 1 "$BENCH_DIR/peers-airllm-venv-build.log" 2>/dev/null); log $BENCH_DIR/peers-airllm-venv-build.log)"
        note "skipping AirLLM rows: $AIRLLM_SKIP"
    fi
fi

# ---------------------------------------------------------------- models
SMOL=$("$ROOT/scripts/fetch_smollm2.sh" | tail -n 1)
if [[ $MODELS == *7b* ]] || [[ $CASES == *b* ]]; then bench_checkpoint; fi
hf_of() { case $1 in smol) echo "$SMOL" ;; 7b) echo "$HF7" ;; esac; }
name_of() { case $1 in smol) echo "SmolLM2-135M" ;; 7b) echo "7B-shaped L$LAYERS" ;; esac; }
# A stamp of the checkpoint and of this converter: a cached file made from
# other weights or by another bench_peers.py is remade.
# ckpt_stamp: of the checkpoint alone (airllm containers, AirLLM's shards).
stamp_of() {
    { stat -c '%n %s %Y' "$1"/*.safetensors; sha256sum "$PY" | cut -c1-16; } | sha256sum | cut -c1-16
}
ckpt_stamp() { stat -c '%n %s %Y' "$1"/*.safetensors | sha256sum | cut -c1-16; }
# gguf M KIND: path of the model's GGUF (f16, bf16, q8_0, q4_0), made if
# missing or stale. Quantized ones come from the F16 one.
gguf_of() {
    local m=$1 kind=$2 hf st out
    hf=$(hf_of "$m")
    st=$(stamp_of "$hf")
    out=$CACHE/$m-$kind-$st.gguf
    if [ ! -f "$out" ]; then
        rm -f "$CACHE/$m-$kind-"*.gguf
        note "writing $out"
        case $kind in
            f16|bf16) "$LVENV/bin/python" "$PY" gguf "$hf" "$out" "$kind" >&2 ;;
            *) "$LVENV/bin/python" "$PY" quantize "$(gguf_of "$m" f16)" "$out" "$kind" 2>>"$WORK/quantize.log" >&2 ||
                { tail -n 5 "$WORK/quantize.log" >&2; die "quantizing $m to $kind failed"; } ;;
        esac
    fi
    echo "$out"
}
# air_dir M KIND: the model converted by this checkout's tools (bf16, int8,
# int8e, nf4, nf4h; block 32), cached while the checkpoint and the tools are
# the same.
TOOLS_ST=$(cat "$BIN/airllm-split" "$BIN/airllm-quant" | sha256sum | cut -c1-8)
air_dir() {
    local m=$1 kind=$2 d
    d=$CACHE/air-$m-$kind-$(ckpt_stamp "$(hf_of "$m")")-$TOOLS_ST
    if [ ! -f "$d/manifest.json" ]; then
        rm -rf "$CACHE/air-$m-$kind-"*
        note "writing $d"
        if [ "$kind" = bf16 ]; then
            "$BIN/airllm-split" -q -f "$(hf_of "$m")" "$d" >&2
        elif [ "$kind" = int8e ]; then
            # as llama.cpp's Q8_0 GGUFs: token_embd and output are Q8_0 too
            "$BIN/airllm-quant" -q -f -t int8 -b 32 --include embed,lm_head \
                "$(air_dir "$m" bf16)" "$d" >&2
        elif [ "$kind" = nf4h ]; then
            "$BIN/airllm-quant" -q -f -t nf4 -b 32 --include embed=int8,lm_head=int8 \
                "$(air_dir "$m" bf16)" "$d" >&2
        else
            "$BIN/airllm-quant" -q -f -t "$kind" -b 32 "$(air_dir "$m" bf16)" "$d" >&2
        fi
    fi
    echo "$d"
}

# ---------------------------------------------------------------- runners
IDS3=1,2,3
PIDS=$(python3 -c "import sys; print(','.join(str(100 + i) for i in range(int(sys.argv[1]))))" "$PLEN")
# air MODE DIR ARGS...: one airllm-run; prints "rate ids" (decode: tokens_per_s
# and the generated ids; prefill: prompt tokens / prefill_s).
air() {
    local mode=$1 dir=$2
    shift 2
    sync
    if [ "$mode" = prefill ]; then set -- "$@" --ids "$PIDS" -n 1; fi
    "$BIN/airllm-run" -q --json "$@" "$dir" >"$WORK/air.json" 2>"$WORK/air.err" ||
        { cat "$WORK/air.err" >&2; die "airllm-run failed: $* $dir"; }
    python3 - "$WORK/air.json" "$mode" "$PLEN" <<'EOF'
import json, sys
# JSON Lines (docs/json.md): the result line first, the summary last
lines = [json.loads(l) for l in open(sys.argv[1])]
r, t = lines[0], lines[-1]
if sys.argv[2] == "prefill":
    print(int(sys.argv[3]) / t["timings"]["prefill_s"], "-")
else:
    print(t["tokens_per_second"], ",".join(str(i) for i in r["generated_ids"]))
EOF
}
# peer MODE GGUF [N]: one llama.cpp run (llama-cpp-python); prints "rate ids".
# A run killed by SIGILL is run again without llama.cpp's extra buffer
# types (weight repacking, AMX; see bench_peers.py), and the GGUF is noted in
# $WORK/noextra so that its rows are marked.
peer() {
    local mode=$1 g=$2 n=${3:-$NTOK} extra=1 rc=0 out
    grep -qxF "$g" "$WORK/noextra" 2>/dev/null && extra=0
    sync
    if [ "$mode" = prefill ]; then set -- prefill "$PIDS"; else set -- decode "$n" "$IDS3"; fi
    out=$(BENCH_LLAMA_EXTRA_BUFTS=$extra "$LVENV/bin/python" "$PY" llama "$g" "$THREADS" "$@" 2>"$WORK/peer.err") || rc=$?
    if [ "$rc" = 132 ] && [ "$extra" = 1 ]; then
        note "llama.cpp died of SIGILL on $g: again without extra buffer types"
        echo "$g" >>"$WORK/noextra"
        rc=0
        out=$(BENCH_LLAMA_EXTRA_BUFTS=0 "$LVENV/bin/python" "$PY" llama "$g" "$THREADS" "$@" 2>"$WORK/peer.err") || rc=$?
    fi
    [ "$rc" = 0 ] || { grep -v '^llama_graph_n_input\|^llama_model_loader\|^load_tensors\|^print_info' "$WORK/peer.err" | tail -n 20 >&2; die "llama.cpp failed on $g (exit $rc)"; }
    if [ "$mode" = prefill ]; then echo "$out -"; else echo "$out"; fi
}
ROWS=$WORK/rows
: >"$ROWS"
# row LABEL UNIT TARGET OURS PEER: UNIT tok/s (ratio ours / peer) or s/tok
# (ratio peer / ours); OURS or PEER "skip:why" skips the row.
row() {
    echo "$1|$2|$3|$4|$5" >>"$ROWS"
    note "$1: airllm-run $4, peer $5 ($2)"
}
# best CMD_A CMD_B: RUNS interleaved runs of both; prints "best_a best_b
# ids_a ids_b" (the highest rates, the ids of the last run).
best() {
    local a=$1 b=$2 ra rb ba=0 bb=0 ia ib out
    for _ in $(seq "$RUNS"); do
        out=$(eval "$a")
        read -r ra ia <<<"$out"
        out=$(eval "$b")
        read -r rb ib <<<"$out"
        ba=$(python3 -c "import sys; print(max(float(sys.argv[1]), float(sys.argv[2])))" "$ba" "$ra")
        bb=$(python3 -c "import sys; print(max(float(sys.argv[1]), float(sys.argv[2])))" "$bb" "$rb")
    done
    echo "$ba $bb $ia $ib"
}
# agree IDS_A IDS_B: how many leading ids two greedy runs share.
agree() {
    python3 -c "import sys; a, b = sys.argv[1].split(','), sys.argv[2].split(','); n = 0
while n < min(len(a), len(b)) and a[n] == b[n]: n += 1
print('%d/%d' % (n, min(len(a), len(b))))" "$1" "$2"
}

echo "host:  $(nproc) CPUs, $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "airllm-run: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo +dirty) ($BIN); threads $THREADS"
[ -z "$LLAMA_SKIP" ] && [[ $CASES == *[ab]* ]] && echo "llama.cpp: llama-cpp-python $LLAMA_V ($("$LVENV/bin/python" -c 'import llama_cpp; print(llama_cpp.llama_print_system_info().decode())' 2>/dev/null | cut -c1-120))"
[ -z "$AIRLLM_SKIP" ] && [[ $CASES == *c* ]] && echo "AirLLM: airllm $AIRLLM_V, torch $("$AVENV/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null)"

# ---------------------------------------------------------------- (a)
if [[ $CASES == *a* ]]; then
    for m in $MODELS; do
        for pair in ${BENCH_PAIRS:-bf16:f16 bf16:bf16 int8:q8_0 int8e:q8_0 nf4:q4_0 nf4h:q4_0}; do
            ours=${pair%%:*} theirs=${pair#*:}
            label="(a) $(name_of "$m") $ours / ${theirs^^}"
            if [ -n "$LLAMA_SKIP" ]; then
                row "$label decode" tok/s "≥ 1.0" "-" "skip:no llama.cpp"
                continue
            fi
            d=$(air_dir "$m" "$ours")
            g=$(gguf_of "$m" "$theirs")
            cat "$d"/*.airc "$g" >/dev/null # both warm in the page cache
            res=$(best "air decode $d --mem-budget 100G -t $THREADS --ids $IDS3 -n $NTOK" "peer decode $g")
            read -r a b ia ib <<<"$res"
            grep -qxF "$g" "$WORK/noextra" 2>/dev/null && label="$label*"
            row "$label decode" tok/s "≥ 1.0" "$a" "$b"
            note "greedy ids agree: $(agree "$ia" "$ib") leading tokens"
            res=$(best "air prefill $d --mem-budget 100G -t $THREADS" "peer prefill $g")
            read -r a b _ _ <<<"$res"
            row "$label prefill $PLEN" tok/s "≥ 1.0" "$a" "$b"
            # llama.cpp's Q8_0/Q4_0 decode and prefill round activations
            # to int8; so does airllm-run with --int8-activations (off by
            # default)
            if [ "$ours" != bf16 ]; then
                res=$(best "air decode $d --mem-budget 100G -t $THREADS --ids $IDS3 -n $NTOK --int8-activations" \
                    "peer decode $g")
                read -r a b _ _ <<<"$res"
                row "$label decode, --int8-activations" tok/s "≥ 1.0" "$a" "$b"
                res=$(best "air prefill $d --mem-budget 100G -t $THREADS --int8-activations" \
                    "peer prefill $g")
                read -r a b _ _ <<<"$res"
                row "$label prefill $PLEN, --int8-activations" tok/s "≥ 1.0" "$a" "$b"
            fi
        done
    done
fi

# ---------------------------------------------------------------- (b)
if [[ $CASES == *b* ]]; then
    label="(b) 7B-shaped L$LAYERS bf16 --mem-budget 0 / F16 mmap, RAM scarce"
    if [ -n "$LLAMA_SKIP" ]; then
        row "$label" s/tok "≥ 2.0" "-" "skip:no llama.cpp"
    else
        d=$(air_dir 7b bf16)
        g=$(gguf_of 7b f16)
        ckpt=$(cat "$HF7"/*.safetensors | wc -c)
        FREE=${BENCH_SCARCE_FREE:-$(python3 -c "import sys; print(int(int(sys.argv[1]) * 5 / 13.48))" "$ckpt")}
        echo "(b): checkpoint $ckpt bytes; leaving $FREE bytes of MemAvailable free (mlock of the rest)"
        python3 "$PY" mlock "$FREE" >"$WORK/mlock.out" 2>&1 &
        MLOCK_PID=$!
        for _ in $(seq 300); do
            grep -q '^locked' "$WORK/mlock.out" && break
            kill -0 "$MLOCK_PID" 2>/dev/null || { cat "$WORK/mlock.out" >&2; die "the mlock helper died"; }
            sleep 1
        done
        grep -q '^locked' "$WORK/mlock.out" || die "the mlock helper did not lock in 300 s"
        echo "(b): $(cat "$WORK/mlock.out"); MemAvailable now $(awk '/^MemAvailable:/ { printf "%.0f", $2 * 1024 }' /proc/meminfo)"
        # Without extra buffer types, so that llama.cpp computes on its mmap:
        # with them (this VM reports AMX) it copied the 32-layer F16 weights
        # into anonymous buffers (5.1 GB when the OOM killer struck), which
        # no scarce-memory run survives.
        echo "$g" >>"$WORK/noextra"
        res=$(best "air decode $d --mem-budget 0 --ids $IDS3 -n $SCARCE_TOKENS" "peer decode $g $SCARCE_TOKENS")
        read -r a b _ _ <<<"$res"
        if kill "$MLOCK_PID" 2>/dev/null; then
            wait "$MLOCK_PID" 2>/dev/null || true
            MLOCK_PID=
            row "$label" s/tok "≥ 2.0" "$(python3 -c "print(1 / $a)")" "$(python3 -c "print(1 / $b)")"
        else
            MLOCK_PID=
            row "$label" s/tok "≥ 2.0" "-" "skip:the mlock helper died during the run (OOM killer?)"
        fi
    fi
fi

# ---------------------------------------------------------------- (c)
if [[ $CASES == *c* ]]; then
    # airllm-run as it ships (the fast load check hashes every byte it
    # streams) and with --verify-load=off (AirLLM checks nothing), each
    # against AirLLM as shipped and with its gc.collect removed.
    for m in $MODELS; do
        for mode in shipped nogc; do
            if [ -n "$AIRLLM_SKIP" ]; then
                row "(c) $(name_of "$m") bf16 --mem-budget 0 / AirLLM $mode" tok/s "-" "-" \
                    "skip:no AirLLM"
                continue
            fi
            d=$(air_dir "$m" bf16)
            hf=$(hf_of "$m")
            shards=$CACHE/airllm-shards-$m-$(ckpt_stamp "$hf")
            cat "$d"/*.airc >/dev/null
            [ -d "$shards" ] || rm -rf "$CACHE/airllm-shards-$m-"*
            res=$(air decode "$d" --mem-budget 0 --ids "$IDS3" -n "$AIR_TOKENS")
            read -r a _ <<<"$res"
            res=$(air decode "$d" --mem-budget 0 --verify-load=off --ids "$IDS3" -n "$AIR_TOKENS")
            read -r a_off _ <<<"$res"
            b=$("$AVENV/bin/python" "$PY" airllm "$hf" "$shards" "$mode" "$AIR_TOKENS" "$IDS3" 2>"$WORK/airllm.err" | tail -n 1) ||
                { tail -n 20 "$WORK/airllm.err" >&2; die "AirLLM failed on $hf"; }
            tgt="-"
            [ "$m" = 7b ] && [ "$mode" = nogc ] && tgt="≥ 3.0"
            row "(c) $(name_of "$m") bf16 --mem-budget 0 / AirLLM $mode" tok/s "$tgt" "$a" "$b"
            row "(c) $(name_of "$m") bf16 --mem-budget 0 --verify-load=off / AirLLM $mode" tok/s \
                "$tgt" "$a_off" "$b"
        done
    done
fi

# ---------------------------------------------------------------- table
echo
python3 - "$ROWS" <<'EOF'
import sys
print("%-62s %6s %11s %11s %8s %7s" % ("case", "unit", "airllm-run", "peer", "ratio", "target"))
for line in open(sys.argv[1]):
    label, unit, target, ours, peer = line.rstrip("\n").split("|")
    if peer.startswith("skip:") or ours == "-":
        print("%-62s %6s %11s %11s %8s %7s" % (label, unit, ours, peer[5:] if peer.startswith("skip:") else peer, "-", target))
        continue
    o, p = float(ours), float(peer)
    ratio = o / p if unit == "tok/s" else p / o
    print("%-62s %6s %11.4g %11.4g %7.2fx %7s" % (label, unit, o, p, ratio, target))
EOF
[ -s "$WORK/noextra" ] && echo "*: llama.cpp without extra buffer types (no weight repacking, no AMX): in (a) the default died of SIGILL; (b) always runs without, on its mmap"
echo "ratio: airllm-run's speed over the peer's (tok/s: ours / peer; s/tok: peer / ours)."
echo "tok/s: best of $RUNS interleaved runs ((a), (b)); decode over the steps after the first."
