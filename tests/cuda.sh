#!/usr/bin/env bash
# The CUDA backend against the CPU backend (docs/runner.md "CUDA"): greedy ids
# identical and logits within a tolerance on ../shared/golden and on the
# transformers fixtures of every architecture (and the remote-code
# families' goldens, tests/data/families), each held in VRAM and
# streamed through a budget of about two layers, batched, with the KV cache
# on the host; and its errors (a budget too small names one that fits).
#
# Without a GPU (or a build without CUDA) the GPU checks are reported as
# skipped, not passed: the test prints SKIP lines and exits 77, which CTest
# shows as "Skipped". With a GPU the device tool runs it.
. "$(dirname "$0")/testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
: "${AIRLLM_QUANT:?set AIRLLM_QUANT to the airllm-quant binary}"
R=$AIRLLM_RUN
S=$SCRATCH
GOLD="$SHARED_DIR/golden"

"$AIRLLM_SPLIT" -q "$MODELS/stories260K" "$S/f32"

# Usage errors, with or without a GPU.
run 2 "a bad --device is a usage error" "$R" --device gpu --ids 1 "$S/f32"
expect_err "cpu, cuda or cuda:N" "it lists the devices"
run 2 "--gpu-mem-budget needs --device cuda" "$R" --gpu-mem-budget 1G --ids 1 "$S/f32"
run 2 "a bad --gpu-mem-budget is a usage error" "$R" --device cuda --gpu-mem-budget 1Q --ids 1 "$S/f32"
run 0 "--device cpu is the CPU" "$R" -q --device cpu --ids 1,2 -n 2 "$S/f32"

# The backend is a module loaded on --device cuda: a CPU run must not map
# the CUDA libraries (they cost 150 MiB of RSS), and a missing module is a
# clear error, not a crash.
if [ -f "$(dirname "$R")/airllm-cuda.so" ]; then
    if ldd "$R" | grep -qE "libcudart|libcublas"; then
        bad "airllm-run links the CUDA libraries: $(ldd "$R" | grep -E "libcudart|libcublas" | tr -s ' \n' ' ')"
    else
        ok "airllm-run does not link the CUDA libraries (the module does)"
    fi
    run 1 "a missing CUDA module is a clear error" env AIRLLM_CUDA_MODULE="$S/none.so" \
        "$R" -q --device cuda --ids 1 "$S/f32"
    expect_err "cannot load the CUDA backend $S/none.so" "it names the module"
fi

# Without the module (a build without CUDA) or a device, --device cuda must
# fail cleanly (exit 1, a message saying why), never crash; then the GPU
# checks are skipped.
"$R" -q --device cuda --ids 1,2,3 -n 2 "$S/f32" >"$S/probe.out" 2>"$S/probe.err"
rc=$?
if [ $rc -ne 0 ]; then
    if [ $rc -eq 1 ] && grep -qE "cannot find the CUDA backend|no CUDA device" "$S/probe.err"; then
        ok "no GPU here: --device cuda fails cleanly ($(head -c 200 "$S/probe.err"))"
        echo "SKIP: every CUDA check (no usable GPU or no CUDA build): $(head -c 300 "$S/probe.err")"
        echo "$PASS passed, $FAIL failed, GPU checks skipped"
        [ "$FAIL" -eq 0 ] && exit 77
        exit 1
    fi
    bad "--device cuda failed without a clear reason: exit $rc: $(head -c 600 "$S/probe.err")"
    finish
    exit 1
fi
ok "--device cuda runs"

"$AIRLLM_SPLIT" -q "$MODELS/stories260K-bf16-sharded" "$S/bf16"
"$AIRLLM_SPLIT" -q -c zstd "$MODELS/stories260K-bf16-sharded" "$S/bf16z"
"$AIRLLM_QUANT" -q -t nf4 -b 64 "$MODELS/stories260K-bf16-sharded" "$S/nf4"
"$AIRLLM_QUANT" -q -t int8 "$MODELS/stories260K" "$S/int8"
"$AIRLLM_QUANT" -q -t fp4 --double-quant "$MODELS/stories260K" "$S/fp4dq"


# The smallest budget that streams: twice the largest unit (the error of a
# budget of 1 byte names it).
min_budget() { # DIR
    "$R" -q --device cuda --gpu-mem-budget 1 --ids 1 -n 1 "$1" 2>&1 >/dev/null |
        grep -oE -- '--gpu-mem-budget [0-9]+M' | head -n 1 | awk '{print $2}'
}

# ---- shared goldens, against the independent reference ----
for m in f32:stories260K bf16:stories260K-bf16-sharded bf16z:stories260K-bf16-sharded; do
    d="$S/${m%%:*}"
    g="$GOLD/${m#*:}.json"
    mb=$(min_budget "$d")
    [ -n "$mb" ] && ok "$(basename "$d"): a budget of 1 byte is refused, naming $mb" ||
        bad "$(basename "$d"): no budget named for a budget of 1 byte"
    golden "$d" "$g" 1e-3 -- --device cuda
    golden "$d" "$g" 1e-3 -- --device cuda --gpu-mem-budget "${mb:-1G}" --mem-budget 0
    golden "$d" "$g" 1e-3 -- --device cuda --gpu-mem-budget "${mb:-1G}" --no-prefetch
    golden "$d" "$g" 1e-3 --batch -- --device cuda
    golden "$d" "$g" 1e-3 --batch -- --device cuda --gpu-mem-budget "${mb:-1G}" --mem-budget 0
    golden "$d" "$g" 1e-3 -- --device cuda --kv-host
done

# ---- CUDA against CPU: quantized directories and the architectures ----
# Greedy ids identical, logits within 1e-3 of the logits' scale.
vs_cpu() { # DIR DESC ARGS...
    local d=$1 desc=$2
    shift 2
    "$R" -q --json --dump-logits "$S/cpu.bin" --ids "$IDS" -n 12 "$d" >"$S/cpu.json" 2>"$S/err" &&
        "$R" -q --json --dump-logits "$S/gpu.bin" --ids "$IDS" -n 12 --device cuda "$@" "$d" \
            >"$S/gpu.json" 2>>"$S/err"
    if [ $? -ne 0 ]; then
        bad "$desc: $(head -c 600 "$S/err")"
        return
    fi
    if python3 - "$S/cpu.json" "$S/gpu.json" "$S/cpu.bin" "$S/gpu.bin" >"$S/cmp" 2>&1 <<'PY'
import json, struct, sys
# the result line of each (JSON Lines, docs/json.md)
a, b = (json.loads(open(p).readline()) for p in sys.argv[1:3])
la, lb = (open(p, "rb").read() for p in sys.argv[3:5])
la = struct.unpack("<%df" % (len(la) // 4), la)
lb = struct.unpack("<%df" % (len(lb) // 4), lb)
scale = max(abs(v) for v in la) or 1.0
diff = max(abs(x - y) for x, y in zip(la, lb))
same = a["generated_ids"] == b["generated_ids"]
print("ids %s, max |logit diff| %.2e (scale %.2f)" % ("identical" if same else "DIFFER", diff, scale))
sys.exit(0 if same and len(la) == len(lb) and diff <= 1e-3 * max(1.0, scale) else 1)
PY
    then
        ok "$desc: $(cat "$S/cmp")"
    else
        bad "$desc: $(cat "$S/cmp")"
    fi
}
IDS=1,403,9,77,12,300,5,5,41
for d in nf4 int8 fp4dq; do
    vs_cpu "$S/$d" "$d held" --gpu-mem-budget 1G
    mb=$(min_budget "$S/$d")
    vs_cpu "$S/$d" "$d streamed ($mb)" --gpu-mem-budget "${mb:-1G}" --mem-budget 0
done
for dir in "$SRC_DIR"/tests/data/arch/*/; do
    c=$(basename "$dir")
    rm -rf "$S/arch" "$S/archq"
    "$AIRLLM_SPLIT" -q "$dir" "$S/arch"
    golden "$S/arch" "$dir/golden.json" 1e-4 -- --device cuda
    mb=$(min_budget "$S/arch")
    golden "$S/arch" "$dir/golden.json" 1e-4 -- --device cuda --gpu-mem-budget "${mb:-1G}" --mem-budget 0
    IDS=$(python3 -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['prompt_ids'])))" "$dir/golden.json")
    "$AIRLLM_QUANT" -q -t nf4 -b 32 "$S/arch" "$S/archq"
    vs_cpu "$S/archq" "$c nf4 streamed" --gpu-mem-budget "${mb:-1G}" --mem-budget 0
done

# The fused-matrix families: ChatGLM and Baichuan (tests/data/arch, float
# held and streamed by the loop above; fused qkv / gate|up, half-head
# adjacent RoPE, ALiBi, NormHead) and Qwen v1 / InternLM / InternLM2
# (tests/data/families: grouped q/k/v split, per-token RoPE tables, Qwen
# logn). Batched, and the nf4 / int8 goldens held and streamed, each
# quantized as its generator did (ChatGLM/Baichuan nf4 with the LM head).
for dir in "$SRC_DIR"/tests/data/arch/{chatglm,baichuan}_*/ "$SRC_DIR"/tests/data/families/*/; do
    [ -f "$dir/golden.json" ] || continue
    head=()
    rm -rf "$S/fam" "$S/fam.nf4" "$S/fam.int8"
    "$AIRLLM_SPLIT" -q "$dir" "$S/fam"
    case $dir in
    */arch/*) head=(--include lm_head) ;;
    *)
        golden "$S/fam" "$dir/golden.json" 1e-4 -- --device cuda
        mb=$(min_budget "$S/fam")
        golden "$S/fam" "$dir/golden.json" 1e-4 -- --device cuda --gpu-mem-budget "${mb:-1G}" \
            --mem-budget 0
        ;;
    esac
    golden "$S/fam" "$dir/golden.json" 1e-4 --batch -- --device cuda
    "$AIRLLM_QUANT" -q -t nf4 "${head[@]}" "$S/fam" "$S/fam.nf4"
    "$AIRLLM_QUANT" -q -t int8 "$S/fam" "$S/fam.int8"
    for q in nf4 int8; do
        golden "$S/fam.$q" "$dir/golden_$q.json" 1e-4 -- --device cuda
        mb=$(min_budget "$S/fam.$q")
        golden "$S/fam.$q" "$dir/golden_$q.json" 1e-4 -- --device cuda --gpu-mem-budget "${mb:-1G}" \
            --mem-budget 0
    done
done

# ---- peak VRAM: within the weight budget + KV cache + work buffers ----
mb=$(min_budget "$S/nf4")
"$R" -q --json --device cuda --gpu-mem-budget "${mb:-1G}" --mem-budget 0 --ids "$IDS" -n 8 \
    "$S/nf4" >"$S/vram.json" 2>"$S/err"
if python3 - "$S/vram.json" "${mb:-1G}" >"$S/cmp" 2>&1 <<'PY'
import json, sys
g = json.loads(open(sys.argv[1]).read().splitlines()[-1])["gpu"]  # the summary line
budget = float(sys.argv[2].rstrip("M")) * 2**20 if sys.argv[2].endswith("M") else 2**30
weights = g["held_bytes"] + 2 * g["stream_buffer_bytes"]
fixed = 1 << 20  # RoPE table and rounding
print("peak %.2f MiB: weights %.2f (budget %.2f) + KV %.2f + work %.2f" % (
    g["peak_bytes"] / 2**20, weights / 2**20, budget / 2**20, g["kv_bytes"] / 2**20,
    g["work_bytes"] / 2**20))
sys.exit(0 if weights <= budget and
         g["peak_bytes"] <= weights + g["kv_bytes"] + g["work_bytes"] + fixed else 1)
PY
then
    ok "VRAM: $(cat "$S/cmp")"
else
    bad "VRAM: $(cat "$S/cmp") $(head -c 300 "$S/err")"
fi
run 0 "--profile and --verify-load --direct --io-threads 3 on the GPU" "$R" -q --profile \
    --device cuda --gpu-mem-budget "${mb:-1G}" --mem-budget 0 --verify-load --direct \
    --io-threads 3 --ids "$IDS" -n 4 "$S/nf4"
expect_err "copied in" "the profile reports the copies"

# ---- errors ----
run 1 "a GPU budget below two layers is refused" "$R" --device cuda --gpu-mem-budget 1K --ids 1 "$S/f32"
expect_err "--gpu-mem-budget" "the refusal names a budget that fits"
run 1 "a missing device is refused" "$R" --device cuda:99 --ids 1 "$S/f32"
expect_err "cuda:99" "the refusal names the device"
finish
