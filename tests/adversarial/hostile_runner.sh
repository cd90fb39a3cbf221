#!/usr/bin/env bash
# airllm-run against hostile inputs (issues 16 and 18): a 64-bit embedding
# that overflowed the row buffer, a NUL in --prompts, float-to-int casts of
# config and option values, sizes past 2^64, activations and epsilons the
# runner would have run wrongly without a word, a normalizer that grows the
# text without bound, a manifest with two layer files swapped (it leaked).
. "$(dirname "$0")/../testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
R=$AIRLLM_RUN
S=$SCRATCH
FIX="$SRC_DIR/tests/adversarial/hostile_fixture.py"

"$AIRLLM_SPLIT" -q "$MODELS/stories260K" "$S/m" || { bad "split stories260K"; finish; exit; }
copy() { rm -rf "$S/$1" && cp -r "$S/m" "$S/$1"; }

# ---- an F64 embedding: refused, by the runner and by verify ----
# (rt_store_embed_rows read hidden*8 bytes into hidden*4+64 with
# --mem-budget 0: a heap overflow with file bytes; verify called it OK)
python3 "$FIX" ckpt "$MODELS/stories260K" "$S/f64src" --f64 model.embed_tokens.weight
"$AIRLLM_SPLIT" -q "$S/f64src" "$S/f64"
run 1 "F64 embedding streamed by rows: refused" "$R" -q --mem-budget 0 --ids 1,2 -n 2 "$S/f64"
expect_err "model.embed_tokens.weight\" is F64" "the refusal names the tensor and its dtype"
run 1 "F64 embedding resident: refused" "$R" -q --ids 1,2 -n 2 "$S/f64"
run 1 "verify applies the runner's dtype check" "$AIRLLM_VERIFY" -q "$S/f64"
expect_err "is F64" "verify names the dtype"

# ---- --prompts with a NUL byte: the rest of the file was dropped ----
printf 'ids:1,2\nids:1,3\0ids:9\nids:1,4\n' >"$S/nul.txt"
run 1 "a NUL in --prompts is refused" "$R" -q --prompts "$S/nul.txt" -n 1 "$S/m"
expect_err "nul.txt: line 2 holds a NUL byte" "the message names the file and the line"
printf 'ids:1,2\nids:1,3\n' >"$S/ok.txt"
run 0 "the same file without the NUL runs" "$R" -q --prompts "$S/ok.txt" -n 1 "$S/m"

# ---- sizes: overflow, inf, nan, exponents ----
for b in 1e30 inf nan -1 17179869184G 18446744073709551616 1.5Q; do
    run 2 "--mem-budget $b is a usage error" "$R" -q --mem-budget "$b" --ids 1 -n 1 "$S/m"
    expect_err "bad --mem-budget" "--mem-budget $b: the message names the option"
done
for b in 0 512K 1.5M 1G 17179869183G; do
    run 0 "--mem-budget $b runs" "$R" -q --mem-budget "$b" --ids 1 -n 1 "$S/m"
done
run 2 "--gpu-mem-budget goes through the same parser" \
    "$R" -q --device cuda --gpu-mem-budget 17179869184G --ids 1 -n 1 "$S/m"
expect_err "bad --gpu-mem-budget" "--gpu-mem-budget overflow: the message names the option"

# ---- config values ----
cfg_refused() { # NAME EXPECT KEY=VALUE...: the runner refuses the config
    local name=$1 want=$2
    shift 2
    copy "$name"
    python3 "$FIX" setcfg "$S/$name" "$@"
    run 1 "config $*: refused" "$R" -q --ids 1 -n 1 "$S/$name"
    expect_err "$want" "config $*: the message says why"
}
cfg_refused eos "eos_token_id 1e+30" eos_token_id=1e30
cfg_refused eos_list "eos_token_id 2.5" 'eos_token_id=[2, 2.5]'
cfg_refused gelu 'hidden_act "gelu" is not supported' 'hidden_act="gelu"'
cfg_refused relu 'hidden_activation "relu" is not supported' 'hidden_activation="relu"'
cfg_refused eps_neg "rms_norm_eps -1 must be a positive" rms_norm_eps=-1
cfg_refused eps_zero "rms_norm_eps 0 must be a positive" rms_norm_eps=0
cfg_refused eps_tiny "rms_norm_eps 1e-50 must be a positive" rms_norm_eps=1e-50
cfg_refused eps_big "rms_norm_eps 1e+300 must be a positive" rms_norm_eps=1e300
cfg_refused lne "layer_norm_epsilon -1e-05 must be a positive" layer_norm_epsilon=-1e-5
# verify: the conversion of such a config is faithful (not a problem), but
# what the runner would refuse is noted; an activation it does not
# implement is not even that
run 0 "verify: a negative rms_norm_eps is not a conversion problem" "$AIRLLM_VERIFY" "$S/eps_neg"
expect_err "note: airllm-run would refuse it: " "verify notes that the runner refuses it"
expect_err "rms_norm_eps -1 must be a positive" "verify's note names the value"
run 0 "verify: eos_token_id 1e30, noted" "$AIRLLM_VERIFY" "$S/eos"
expect_err "eos_token_id 1e+30 is not a token id" "verify's note names the id"
run 0 "verify: a gelu model passes (valid, not implemented by the runner)" \
    "$AIRLLM_VERIFY" "$S/gelu"
if grep -q "note:" "$S/last.err"; then bad "verify notes gelu"; else ok "verify does not note gelu"; fi
copy swish
python3 "$FIX" setcfg "$S/swish" 'hidden_act="swish"'
run 0 "hidden_act swish (SiLU) runs" "$R" -q --ids 1 -n 1 "$S/swish"

# ---- a normalizer that multiplies the text ----
# 8 chained Replace steps, each a -> aaaa: 4^8 = 65536 bytes per "a" (the
# issue's 1 KB file reached 18 GB with longer replacements).
copy norm
python3 - "$S/norm/tokenizer.json" <<'EOF'
import json, sys
p = sys.argv[1]
t = json.load(open(p))
t["normalizer"] = {"type": "Sequence", "normalizers": [
    {"type": "Replace", "pattern": {"String": "a"}, "content": "aaaa"}] * 8}
json.dump(t, open(p, "w"))
EOF
run 1 "a normalizer chain that grows the text 65536-fold is refused" \
    "$R" -q -p "a cat" -n 1 "$S/norm"
expect_err "normalizer grows 5 bytes of text past 16 times" "the message says what and how far"

# ---- two layer files swapped in the manifest ----
copy swap
python3 "$FIX" swap "$S/swap" layer.00000.airc layer.00001.airc
# exit 1, not LeakSanitizer's 23: the header read for the refused unit was
# leaked (only the ASan build sees it)
run 1 "swapped layer files are refused (and nothing leaks)" "$R" -q --ids 1 -n 1 "$S/swap"
expect_err "header and manifest disagree" "the message says what is wrong"
run 1 "verify reports the swap" "$AIRLLM_VERIFY" -q "$S/swap"

finish
