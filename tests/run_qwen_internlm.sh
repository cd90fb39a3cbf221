#!/usr/bin/env bash
# airllm-run on the remote-code families' goldens (tests/data/families/,
# made by scripts/make_family_goldens_*.py from each family's published
# modeling code): greedy ids exact and last-position logits within 1e-4,
# resident, streamed, batched (three prompts of mixed lengths, each as if
# alone), zstd, and nf4/int8 from airllm-quant against golden_nf4.json /
# golden_int8.json (the reference run on the same dequantized weights).
# Then bad input: a config whose fused q/k/v dims disagree with the
# tensors, and an unknown architecture, each a clear error.
. "$(dirname "$0")/testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
: "${AIRLLM_QUANT:?set AIRLLM_QUANT to the airllm-quant binary}"
R=$AIRLLM_RUN
S=$SCRATCH

# batch DIR GOLDEN [ARGS]: the golden's prompt twice and its first 7 tokens, in one
# --prompts run; the two full prompts must give the golden's greedy ids
batch() {
    python3 - "$2" "$S/prompts.txt" <<'EOF'
import json, sys
ids = json.load(open(sys.argv[1]))["prompt_ids"]
f = lambda x: ",".join(map(str, x))
open(sys.argv[2], "w").write("ids:%s\nids:%s\nids:%s\n" % (f(ids), f(ids[:7]), f(ids)))
EOF
    if "$R" -q --json --prompts "$S/prompts.txt" -n 8 "${@:3}" "$1" >"$S/b.json" 2>"$S/err" &&
        python3 - "$2" "$S/b.json" <<'EOF'
import json, sys
g = json.load(open(sys.argv[1]))
r = json.load(open(sys.argv[2]))["results"]
assert r[0]["generated_ids"] == g["greedy_ids"], (r[0]["generated_ids"], g["greedy_ids"])
assert r[2]["generated_ids"] == g["greedy_ids"], (r[2]["generated_ids"], g["greedy_ids"])
EOF
    then ok "$(basename "$(dirname "$2")") $(basename "$2"): batch of 3 (mixed lengths) ${*:3}"
    else bad "$2: batch ${*:3}: $(head -c 300 "$S/err")"; fi
}

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
edit_config() { # DIR PYTHON-EXPR-ON-c
    python3 - "$1/config.json" "$2" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
exec(sys.argv[2])
json.dump(c, open(sys.argv[1], "w"))
EOF
}
F="$SRC_DIR/tests/data/families"
if [ -d "$F/internlm2_gqa" ]; then
    rm -rf "$S/bad"
    "$AIRLLM_SPLIT" -q "$F/internlm2_gqa" "$S/bad"
    edit_config "$S/bad" 'c["num_key_value_heads"] = 1'
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
    edit_config "$S/bad" 'c["rotary"] = {"base": 10000, "type": "yarn"}'
    run 1 "internlm: an unknown rotary type" "$R" -q --ids 1,2 -n 2 "$S/bad"
    expect_err 'rotary type "yarn" is not supported' "names the rotary type"
    # the 2024 spelling of the same model gives the same tokens
    edit_config "$S/bad" 'del c["rotary"]; c["rope_theta"] = 10000; c["rope_scaling"] = {"type": "dynamic", "factor": 1.0}'
    golden "$S/bad" "$F/internlm_dynamic/golden.json" 1e-4
fi
if [ -d "$F/qwen_logn_ntk" ]; then
    rm -rf "$S/bad"
    "$AIRLLM_SPLIT" -q "$F/qwen_logn_ntk" "$S/bad"
    edit_config "$S/bad" 'c["intermediate_size"] = 200'
    run 1 "qwen: intermediate_size disagrees with w1/w2" "$R" -q --ids 1,2 -n 2 "$S/bad"
    expect_err "mlp.w2.weight\" is [128, 64], config.json makes it [100, 64]" \
        "names the MLP tensor and both shapes"
    edit_config "$S/bad" 'c["intermediate_size"] = 256; c["kv_channels"] = 8'
    run 1 "qwen: kv_channels disagrees with the heads" "$R" -q --ids 1,2 -n 2 "$S/bad"
    expect_err "config.json: kv_channels 8 x 4 heads must equal hidden_size 64" "names config.json"
    edit_config "$S/bad" 'c["kv_channels"] = 16; c["model_type"] = "qwen_unknown_7"'
    run 1 "an unknown architecture" "$R" -q --ids 1,2 -n 2 "$S/bad"
    expect_err 'architecture "qwen_unknown_7" is not supported' "names the architecture"
fi

finish
