#!/usr/bin/env bash
# airllm-verify against directories airllm-run refuses (issues 16 and 18):
# verify applies the runner's own config and shape checks (runner/rt_check.c),
# so a directory it calls OK is one the runner accepts; --against names the
# real offset of a difference; names with control characters are escaped in
# every tool's messages.
. "$(dirname "$0")/../testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
R=$AIRLLM_RUN
S=$SCRATCH
FIX="$SRC_DIR/tests/adversarial/hostile_fixture.py"

"$AIRLLM_SPLIT" -q "$MODELS/stories260K" "$S/m" || { bad "split stories260K"; finish; exit; }
copy() { rm -rf "$S/$1" && cp -r "$S/m" "$S/$1"; }

run 0 "the unchanged directory verifies" "$AIRLLM_VERIFY" -q "$S/m"
run 0 "and runs" "$R" -q --ids 1 -n 1 "$S/m"

# ---- config.json against the tensors: what the runner refuses ----
mismatch() { # NAME TENSOR KEY=VALUE: verify and run both refuse, naming TENSOR
    local name=$1 tensor=$2
    shift 2
    copy "$name"
    python3 "$FIX" setcfg "$S/$name" "$@"
    run 1 "verify: config $* does not fit the tensors" "$AIRLLM_VERIFY" -q "$S/$name"
    expect_err "$tensor" "verify: config $*: names the tensor"
    expect_err "airllm-run would refuse it" "verify: config $*: says the runner refuses it"
    run 1 "run: config $* is refused" "$R" -q --ids 1 -n 1 "$S/$name"
    expect_err "$tensor" "run: config $*: names the tensor"
}
mismatch vocab 'model.embed_tokens.weight" is [512, 64], config.json makes it [256, 64]' \
    vocab_size=256
mismatch inter 'mlp.gate_proj.weight" is [172, 64], config.json makes it [128, 64]' \
    intermediate_size=128
mismatch kvh 'self_attn.k_proj.weight" is [32, 64], config.json makes it [64, 64]' \
    num_key_value_heads=8
mismatch hdim 'self_attn.q_proj.weight" is [64, 64], config.json makes it [128, 64]' head_dim=16

# ---- a tied LM head pointing at a norm weight ----
copy tied
python3 "$FIX" tie "$S/tied" model.norm.weight
run 1 "verify: tied_to a norm weight is refused" "$AIRLLM_VERIFY" -q "$S/tied"
expect_err 'tied to "model.norm.weight", not to the embedding matrix' "verify says what it is tied to"
run 1 "run: tied_to a norm weight is refused" "$R" -q --ids 1 -n 1 "$S/tied"
expect_err 'tied to "model.norm.weight"' "run says what it is tied to"

# ---- --against: the offset of the first differing byte ----
python3 "$FIX" ckpt "$MODELS/stories260K" "$S/flip" \
    --flip model.layers.0.self_attn.q_proj.weight:4096
run 1 "--against: a byte changed at 4096 is found" "$AIRLLM_VERIFY" -q --against "$S/flip" "$S/m"
expect_err "bytes differ from the source at offset 4096" "--against names offset 4096, not 0"
"$AIRLLM_SPLIT" -q -c zstd "$MODELS/stories260K" "$S/mz"
run 1 "--against, zstd: a byte changed at 4096 is found" \
    "$AIRLLM_VERIFY" -q --against "$S/flip" "$S/mz"
expect_err "decoded bytes differ from the source at offset 4096" "zstd: offset 4096, not 0"

# ---- control characters in names: escaped, never sent raw ----
EVIL=$'model.evil\e[2K\rairllm-verify: OK\n'
python3 "$FIX" ckpt "$MODELS/stories260K" "$S/evil" --add "$EVIL"
raw_free() { # DESC: the last stderr holds no ESC, CR or extra LF, and the escapes
    if LC_ALL=C grep -q $'[\e\r]' "$S/last.err" || grep -q '^airllm-verify: OK' "$S/last.err"; then
        bad "$1: raw control characters reached stderr"
    else
        ok "$1: no raw control characters"
    fi
    expect_err 'evil\x1b[2K\x0dairllm-verify: OK\x0a' "$1: shown as \\xHH"
}
run 1 "split: a tensor that fits no group, its name full of escapes" \
    "$AIRLLM_SPLIT" -q "$S/evil" "$S/evil_out"
raw_free "split's message"
# a name inside layer 0, so that the source opens and verify lists the
# tensor as missing from the output (its own report path, not cli.c's)
EVIL=$'model.layers.0.evil\e[2Kairllm-verify: OK
'
python3 "$FIX" ckpt "$MODELS/stories260K" "$S/evil2" --add "$EVIL"
run 1 "verify --against: a source tensor missing from the output" \
    "$AIRLLM_VERIFY" -q --against "$S/evil2" "$S/m"
expect_err "source tensor is missing from the output" "verify lists the missing tensor"
raw_free "verify's problem list"

finish
