#!/usr/bin/env bash
# The threaded paths, small enough to run under ThreadSanitizer (the TSan
# build in scripts/test.sh runs this script alone): the split pipeline with
# compression jobs, quantization jobs, verify's parallel hashing, and
# airllm-run's pool (2 and 3 threads), streamed with the prefetch thread and
# parallel unit reads, resident, and batched. Every output must still be
# right: verify --against, and the shared goldens.
. "$(dirname "$0")/testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
: "${AIRLLM_QUANT:?set AIRLLM_QUANT to the airllm-quant binary}"
S=$SCRATCH
GOLD="$SHARED_DIR/golden"
src="$MODELS/stories260K-bf16-sharded"

run 0 "split --jobs 2 with zstd" "$AIRLLM_SPLIT" -q -j 2 -c zstd "$src" "$S/z"
run 0 "verify --jobs 2 --against the source" "$AIRLLM_VERIFY" -q -j 2 --against "$src" "$S/z"
run 0 "quant --jobs 2 (nf4)" "$AIRLLM_QUANT" -q -j 2 -t nf4 "$src" "$S/q"
run 0 "verify --jobs 2 the quantized output" "$AIRLLM_VERIFY" -q -j 2 --against "$src" "$S/q"

g="$GOLD/stories260K-bf16-sharded.json"
golden "$S/z" "$g" 1e-3 -- --threads 2
golden "$S/z" "$g" 1e-3 -- --threads 2 --mem-budget 0
golden "$S/z" "$g" 1e-3 -- --threads 3 --mem-budget 0 --io-threads 2
golden "$S/z" "$g" 1e-3 --batch -- --threads 2 --mem-budget 0
# Raw units stream zero-copy (mapped; zstd ones above are read): the
# prefetch thread maps and hashes while the model computes on the mapping.
run 0 "split (raw, streamed mapped)" "$AIRLLM_SPLIT" -q "$src" "$S/r"
golden "$S/r" "$g" 1e-3 -- --threads 2 --mem-budget 0
golden "$S/r" "$g" 1e-3 -- --threads 2 --mem-budget 0 --verify-load=off
golden "$S/r" "$g" 1e-3 --batch -- --threads 2 --mem-budget 0

# stories260K's matrices are too small to be split into jobs: a model whose
# matrices (512 x 1536) and 40-token prefill attention do go to the pool.
# Its logits must not depend on the thread count.
python3 "$SRC_DIR/tests/make_llama_checkpoint.py" "$S/wide-hf" --finite --hidden 512 \
    --intermediate 1536 --layers 2 --vocab 512 --dtype BF16 --norm-dtype F32
"$AIRLLM_SPLIT" -q "$S/wide-hf" "$S/wide"
ids=$(python3 -c "print(','.join(str(i * 37 % 512) for i in range(40)))")
for opts in "--threads 1" "--threads 2 --mem-budget 0" "--threads 2"; do
    tag=${opts// /}
    run 0 "wide model, $opts" "$AIRLLM_RUN" -q --ids "$ids" -n 4 $opts \
        --dump-logits "$S/logits$tag" "$S/wide"
done
for tag in --threads2--mem-budget0 --threads2; do
    cmp -s "$S/logits--threads1" "$S/logits$tag" && ok "wide model: $tag logits = 1 thread's" ||
        bad "wide model: $tag logits differ from 1 thread's"
done
# The same with int8 weights and --int8-activations: x quantized once per
# product (the 40-token prefill), read by every thread's row jobs, with
# results that do not depend on how the rows are split.
"$AIRLLM_QUANT" -q -t int8 "$S/wide" "$S/wide8"
for opts in "--threads 1" "--threads 2 --mem-budget 0" "--threads 3"; do
    tag=${opts// /}
    run 0 "wide int8 model, int8 activations, $opts" "$AIRLLM_RUN" -q --ids "$ids" -n 4 $opts \
        --int8-activations --dump-logits "$S/l8$tag" "$S/wide8"
done
for tag in --threads2--mem-budget0 --threads3; do
    cmp -s "$S/l8--threads1" "$S/l8$tag" && ok "wide int8, int8 activations: $tag = 1 thread" ||
        bad "wide int8, int8 activations: $tag logits differ from 1 thread's"
done
# Without the AMX tiles (VNNI panels; where the CPU has no AMX both runs
# take the panels): the same bits.
run 0 "wide int8 model, int8 activations, AIRLLM_MM_AMX=0" env AIRLLM_MM_AMX=0 "$AIRLLM_RUN" -q \
    --ids "$ids" -n 4 --threads 2 --int8-activations --dump-logits "$S/l8noamx" "$S/wide8"
cmp -s "$S/l8--threads1" "$S/l8noamx" && ok "wide int8, int8 activations: AMX off = on" ||
    bad "wide int8, int8 activations: logits differ with AIRLLM_MM_AMX=0"
run 1 "AIRLLM_MM_AMX=2 is refused" env AIRLLM_MM_AMX=2 "$AIRLLM_RUN" -q --ids "$ids" -n 1 \
    --int8-activations "$S/wide8"
expect_err "AIRLLM_MM_AMX='2' is not 0 or 1" "names the variable"
# airllm-serve: connection threads, the engine thread and the prefetcher,
# with 4 clients at once (streamed and not) on a streamed model; each
# answer equals its solo run, and SIGTERM ends the server cleanly (TSan's
# halt_on_error makes any report a non-zero exit).
if [ -n "${AIRLLM_SERVE:-}" ]; then
    "$AIRLLM_SERVE" --port 0 --threads 2 --mem-budget 0 "$S/z" >"$S/serve.out" 2>"$S/serve.err" &
    spid=$!
    port=""
    for _ in $(seq 600); do
        port=$(sed -n 's/.*listening on http:.*:\([0-9]*\) .*/\1/p' "$S/serve.err")
        [ -n "$port" ] || ! kill -0 "$spid" 2>/dev/null && break
        sleep 0.1
    done
    for i in 1 2 3 4; do
        "$AIRLLM_RUN" -q --json -n $((10 * i)) --threads 2 -p "Once upon a time $i" "$S/z" |
            python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["text"])' >"$S/solo$i"
    done
    python3 - "$port" "$S" <<'PY' && ok "serve: 4 concurrent clients equal their solo runs" ||
import http.client, json, sys, threading
port, S = int(sys.argv[1]), sys.argv[2]
got = {}
def client(i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    body = {"prompt": f"Once upon a time {i}", "max_tokens": 10 * i, "stream": i % 2 == 0}
    c.request("POST", "/v1/completions", json.dumps(body))
    r = c.getresponse().read().decode()
    if i % 2:
        got[i] = json.loads(r)["choices"][0]["text"]
    else:
        got[i] = "".join(json.loads(l[6:])["choices"][0]["text"] for l in r.split("\n")
                         if l.startswith("data: {") and json.loads(l[6:])["choices"])
ts = [threading.Thread(target=client, args=(i,)) for i in (1, 2, 3, 4)]
[t.start() for t in ts]
[t.join() for t in ts]
bad = [i for i in (1, 2, 3, 4) if got.get(i) != open(f"{S}/solo{i}").read().rstrip("\n")]
sys.exit(1 if bad else 0)
PY
        bad "serve: concurrent answers differ from solo runs"
    kill -TERM "$spid"
    wait "$spid" && ok "serve: clean exit after SIGTERM" ||
        bad "serve: exit after SIGTERM: $(tail -c 800 "$S/serve.err")"
fi
finish
