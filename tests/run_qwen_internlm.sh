#!/usr/bin/env bash
# airllm-run on the Qwen v1, InternLM and InternLM2 goldens
# (tests/data/families/, made by scripts/make_family_goldens_a.py from each
# family's published modeling code): greedy ids exact and last-position
# logits within 1e-4, resident, streamed, batched (three prompts of mixed
# lengths, each as if alone), zstd, and nf4/int8 from airllm-quant against
# golden_nf4.json / golden_int8.json (the reference run on the same
# dequantized weights). Then bad input: a config whose fused q/k/v dims
# disagree with the tensors, a clear error (an unknown architecture:
# tests/run.sh).
. "$(dirname "$0")/testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
: "${AIRLLM_QUANT:?set AIRLLM_QUANT to the airllm-quant binary}"
R=$AIRLLM_RUN
S=$SCRATCH

n=0
for dir in "$SRC_DIR"/tests/data/families/*/; do
    [ -f "$dir/golden.json" ] || continue
    n=$((n + 1))
    c=$(basename "$dir")
    rm -rf "$S/f" "$S/z" "$S/q"
    "$AIRLLM_SPLIT" -q "$dir" "$S/f" || { bad "$c: airllm-split"; continue; }
    run 0 "$c: airllm-verify accepts the converted directory" "$AIRLLM_VERIFY" -q "$S/f"
    golden "$S/f" "$dir/golden.json" 1e-4
    golden "$S/f" "$dir/golden.json" 1e-4 -- --mem-budget 0
    batch "$S/f" "$dir/golden.json"
    batch "$S/f" "$dir/golden.json" --mem-budget 0
    "$AIRLLM_SPLIT" -q -c zstd "$dir" "$S/z" && golden "$S/z" "$dir/golden.json" 1e-4 -- --mem-budget 0
    for ty in nf4 int8; do
        [ -f "$dir/golden_$ty.json" ] || { bad "$c: no golden_$ty.json"; continue; }
        rm -rf "$S/q"
        "$AIRLLM_QUANT" -q -t "$ty" "$S/f" "$S/q" || { bad "$c: airllm-quant -t $ty"; continue; }
        golden "$S/q" "$dir/golden_$ty.json" 1e-4
        golden "$S/q" "$dir/golden_$ty.json" 1e-4 -- --mem-budget 0
        batch "$S/q" "$dir/golden_$ty.json" --mem-budget 0
    done
done
[ "$n" -gt 0 ] && ok "$n family goldens" || bad "no goldens under tests/data/families"

# ---- bad input ----
# A config.json whose head counts disagree with the fused matrix: the
# error names the directory's unit file and the fused tensor.
F="$SRC_DIR/tests/data/families"
if [ -d "$F/internlm2_gqa" ]; then
    rm -rf "$S/bad"
    "$AIRLLM_SPLIT" -q "$F/internlm2_gqa" "$S/bad"
    set_key "$S/bad" num_key_value_heads 1
    run 1 "internlm2: kv heads disagree with wqkv" "$R" -q --ids 1,2 -n 2 "$S/bad"
    expect_err "layer.00000.airc" "names the unit file"
    expect_err "attention.wqkv.weight\" is [128, 64], config.json makes it [96, 64]" \
        "names the fused tensor and both shapes"
    run 1 "airllm-verify: the same" "$AIRLLM_VERIFY" -q "$S/bad"
    expect_err "attention.wqkv.weight" "airllm-verify names the fused tensor"
fi
if [ -d "$F/internlm_dynamic" ]; then
    rm -rf "$S/bad"
    "$AIRLLM_SPLIT" -q "$F/internlm_dynamic" "$S/bad"
    set_key "$S/bad" rotary '{"base": 10000, "type": "yarn"}'
    run 1 "internlm: an unknown rotary type" "$R" -q --ids 1,2 -n 2 "$S/bad"
    expect_err 'rotary type "yarn" is not supported' "names the rotary type"
    # the 2024 spelling of the same model gives the same tokens
    set_key "$S/bad" rotary null
    set_key "$S/bad" rope_theta 10000
    set_key "$S/bad" rope_scaling '{"type": "dynamic", "factor": 1.0}'
    golden "$S/bad" "$F/internlm_dynamic/golden.json" 1e-4
fi
if [ -d "$F/qwen_logn_ntk" ]; then
    rm -rf "$S/bad"
    "$AIRLLM_SPLIT" -q "$F/qwen_logn_ntk" "$S/bad"
    set_key "$S/bad" intermediate_size 200
    run 1 "qwen: intermediate_size disagrees with w1/w2" "$R" -q --ids 1,2 -n 2 "$S/bad"
    expect_err "mlp.w2.weight\" is [128, 64], config.json makes it [100, 64]" \
        "names the MLP tensor and both shapes"
    set_key "$S/bad" intermediate_size 256
    set_key "$S/bad" kv_channels 8
    run 1 "qwen: kv_channels disagrees with the heads" "$R" -q --ids 1,2 -n 2 "$S/bad"
    expect_err "config.json: kv_channels 8 x 4 heads must equal hidden_size 64" "names config.json"
fi

finish
