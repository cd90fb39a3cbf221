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
finish
