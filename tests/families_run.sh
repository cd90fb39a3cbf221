#!/usr/bin/env bash
# airllm-run on the ChatGLM2/3 and Baichuan 1/2 goldens (tests/data/arch,
# made by scripts/make_family_goldens_glm_baichuan.py from each family's own
# modeling code), beyond what tests/run.sh does for every arch case (raw
# split: resident, streamed, batched):
#   - zstd-compressed units, resident and streamed;
#   - nf4 (LM head included) and int8 against golden_nf4.json /
#     golden_int8.json, whose references ran on the dequantized tensors:
#     resident, streamed and batched;
#   - each family quirk matters: the same directory with the quirk switched
#     off in config.json (rope_ratio, ALiBi, NormHead) must miss the golden;
#   - a config whose fused dimensions disagree with the tensors: exit 1, a
#     message naming the unit file and the fused tensor;
#   - airllm-verify --against the source still holds with NormHead (the
#     stored head rows are not normalized).
. "$(dirname "$0")/testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
: "${AIRLLM_QUANT:?set AIRLLM_QUANT to the airllm-quant binary}"
R=$AIRLLM_RUN
S=$SCRATCH
A="$SRC_DIR/tests/data/arch"

# batch DIR GOLDEN LABEL: the prompt twice and its first 7 ids, in one run
batch() {
    python3 - "$2" "$S/prompts.txt" <<'EOF'
import json, sys
ids = json.load(open(sys.argv[1]))["prompt_ids"]
open(sys.argv[2], "w").write("ids:%s\nids:%s\nids:%s\n" % (
    ",".join(map(str, ids)), ",".join(map(str, ids[:7])), ",".join(map(str, ids))))
EOF
    if "$R" -q --json --mem-budget 0 --prompts "$S/prompts.txt" -n 8 "$1" >"$S/b.json" 2>"$S/err" &&
        python3 - "$2" "$S/b.json" <<'EOF'
import json, sys
g = json.load(open(sys.argv[1]))
r = sorted((x for x in map(json.loads, open(sys.argv[2])) if x["type"] == "result"),
           key=lambda x: x["index"])  # JSON Lines, docs/json.md
assert r[0]["generated_ids"] == g["greedy_ids"] == r[2]["generated_ids"], (r, g["greedy_ids"])
EOF
    then ok "$3: batch of 3 matches the golden"; else bad "$3: batch: $(head -c 300 "$S/err")"; fi
}

# set_key DIR KEY JSON_VALUE (null: remove) in DIR/config.json
set_key() {
    python3 - "$1/config.json" "$2" "$3" <<'EOF'
import json, sys
p, k, v = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
c = json.load(open(p))
if v is None:
    c.pop(k, None)
else:
    c[k] = v
json.dump(c, open(p, "w"), indent=1)
EOF
}

# misses DIR GOLDEN DESC: the run must NOT match the golden
misses() {
    if python3 "$SRC_DIR/tests/run_golden.py" "$R" "$1" "$2" 1e-4 >"$S/g.out" 2>&1; then
        bad "$3: still matches the golden"
    else
        ok "$3: misses the golden ($(grep -o 'max |logit diff| [^ ]*' "$S/g.out"))"
    fi
}

for c in chatglm_groups chatglm_rope_ratio baichuan_alibi baichuan_rope; do
    d=$A/$c
    [ -f "$d/golden_nf4.json" ] || { bad "$c: no fixture in $d"; continue; }
    rm -rf "$S/$c" "$S/$c.z" "$S/$c.nf4" "$S/$c.int8"
    "$AIRLLM_SPLIT" -q "$d" "$S/$c" && "$AIRLLM_SPLIT" -q -c zstd "$d" "$S/$c.z" &&
        "$AIRLLM_QUANT" -q -t nf4 --include lm_head "$S/$c" "$S/$c.nf4" &&
        "$AIRLLM_QUANT" -q -t int8 "$S/$c" "$S/$c.int8" || { bad "$c: split/quant"; continue; }
    golden "$S/$c.z" "$d/golden.json" 1e-4
    golden "$S/$c.z" "$d/golden.json" 1e-4 -- --mem-budget 0
    for q in nf4 int8; do
        golden "$S/$c.$q" "$d/golden_$q.json" 1e-4
        golden "$S/$c.$q" "$d/golden_$q.json" 1e-4 -- --mem-budget 0
        golden "$S/$c.$q" "$d/golden_$q.json" 1e-4 -- --mem-budget 0 --no-prefetch
        batch "$S/$c.$q" "$d/golden_$q.json" "$c $q"
    done
    run 0 "$c: airllm-verify --against the source" "$AIRLLM_VERIFY" -q --against "$d" "$S/$c"
    run 0 "$c nf4: airllm-verify --against the source" "$AIRLLM_VERIFY" -q --against "$d" "$S/$c.nf4"
done

# ---- every quirk is live: switched off, the golden is missed ----
set_key "$S/chatglm_rope_ratio" rope_ratio null
misses "$S/chatglm_rope_ratio" "$A/chatglm_rope_ratio/golden.json" "chatglm without rope_ratio"
set_key "$S/baichuan_alibi" airllm_norm_head false
misses "$S/baichuan_alibi" "$A/baichuan_alibi/golden.json" "baichuan 13B without NormHead"
set_key "$S/baichuan_alibi" airllm_norm_head true
set_key "$S/baichuan_alibi" airllm_alibi false
misses "$S/baichuan_alibi" "$A/baichuan_alibi/golden.json" "baichuan 13B with RoPE instead of ALiBi"
set_key "$S/baichuan_rope" airllm_alibi true
misses "$S/baichuan_rope" "$A/baichuan_rope/golden.json" "baichuan 7B with ALiBi instead of RoPE"
# the default rules: no max_position_embeddings is ALiBi (13B), a
# vocabulary other than Baichuan 1's 64000 is NormHead (Baichuan2)
set_key "$S/baichuan_alibi" airllm_alibi null
set_key "$S/baichuan_alibi" airllm_norm_head null
golden "$S/baichuan_alibi" "$A/baichuan_alibi/golden.json" 1e-4

# ---- fused dimensions that disagree with the tensors ----
set_key "$S/chatglm_groups" multi_query_group_num 3
run 1 "chatglm: 3 groups in config.json, 2 in the tensors" "$R" -q --ids 1,2 -n 1 "$S/chatglm_groups"
expect_err "layer.00000.airc" "the message names the unit file"
expect_err "query_key_value.weight" "the message names the fused tensor"
set_key "$S/chatglm_groups" multi_query_group_num 2
set_key "$S/chatglm_groups" ffn_hidden_size 100
run 1 "chatglm: ffn_hidden_size disagrees with dense_h_to_4h" "$R" -q --ids 1,2 -n 1 "$S/chatglm_groups"
expect_err "dense_h_to_4h.weight" "the message names the fused tensor"
run 1 "airllm-verify: the same bad config" "$AIRLLM_VERIFY" -q "$S/chatglm_groups"
set_key "$S/chatglm_groups" ffn_hidden_size 160
set_key "$S/chatglm_groups" multi_query_attention false
run 1 "chatglm: multi_query_attention false is refused" "$R" -q --ids 1,2 -n 1 "$S/chatglm_groups"
expect_err "multi_query_attention" "the message names the key"
finish
