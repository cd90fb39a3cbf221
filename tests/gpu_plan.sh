#!/usr/bin/env bash
# The device backend's host side, without a GPU (tests/test_gpu_plan.c):
# the CUDA kernels' decoders against the CPU oracle, and on converted
# directories of every encoding (raw F32/BF16, zstd, nf4 with and without
# double quantization, int8, fp4, a quantized embedding, the Mixtral
# fixture with its experts) the VRAM plan at every budget and the
# copies/views a load makes.
. "$(dirname "$0")/testlib.sh"
: "${AIRLLM_QUANT:?set AIRLLM_QUANT to the airllm-quant binary}"
: "${TEST_GPU_PLAN:?set TEST_GPU_PLAN to the test_gpu_plan binary}"
S=$SCRATCH
"$AIRLLM_SPLIT" -q "$MODELS/stories260K" "$S/f32" || bad "split f32"
"$AIRLLM_SPLIT" -q -c zstd "$MODELS/stories260K-bf16-sharded" "$S/bf16z" || bad "split zstd"
"$AIRLLM_QUANT" -q -t nf4 -b 32 --double-quant "$MODELS/stories260K-bf16-sharded" "$S/nf4dq" ||
    bad "quant nf4 dq"
"$AIRLLM_QUANT" -q -t int8 --include embed,lm_head "$MODELS/stories260K" "$S/int8e" ||
    bad "quant int8"
"$AIRLLM_QUANT" -q -t fp4 -b 64 "$S/f32" "$S/fp4" || bad "quant fp4"
mix="$SRC_DIR/tests/data/arch/mixtral_moe"
"$AIRLLM_SPLIT" -q "$mix" "$S/mixtral" || bad "split mixtral"
"$AIRLLM_QUANT" -q -t nf4 -b 32 "$mix" "$S/mixtral-nf4" || bad "quant mixtral"
if "$TEST_GPU_PLAN" "$S/f32" "$S/bf16z" "$S/nf4dq" "$S/int8e" "$S/fp4" "$S/mixtral" \
    "$S/mixtral-nf4" >"$S/out" 2>&1; then
    ok "test_gpu_plan: $(tail -n 1 "$S/out")"
else
    bad "test_gpu_plan: $(grep -m 20 FAIL "$S/out"; tail -n 1 "$S/out")"
fi
finish
