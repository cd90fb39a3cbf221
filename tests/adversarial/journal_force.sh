#!/usr/bin/env bash
# Issue 18: after an interrupted --delete-original run, OUT_DIR holds the
# only copy of the deleted shards' tensors. The refusal to reuse it said
# "use --force", and --force then deleted that copy. --force must refuse
# while the journal records deleted sources, and no message may suggest
# it; the interrupted command itself must still finish the run.
. "$(dirname "$0")/../testlib.sh"

pristine="$MODELS/stories260K-bf16-sharded"
hf="$SCRATCH/hf" out="$SCRATCH/out"
cp -r "$pristine" "$hf"
chmod -R u+w "$hf"
J="$out/.airllm-split/journal"
(J="$J" AIRLLM_FAULT_HOOK='grep -q "^deleted " "$J" 2>/dev/null && kill -9 $PPID; :' \
    "$AIRLLM_SPLIT" -q --delete-original "$hf" "$out" >/dev/null 2>&1 &
    wait $!) 2>/dev/null
[ $? -eq 137 ] && ok "interrupted after the first shard was deleted" ||
    bad "not interrupted after a deletion"
[ ! -e "$hf/model-00001-of-00003.safetensors" ] && ok "shard 1 is gone from HF_DIR" ||
    bad "shard 1 still there"
before=$(tree_digest "$out")

# no_force_offered DESC: the last refusal names the deleted shard and
# offers no --force
no_force_offered() {
    expect_err "model-00001-of-00003.safetensors" "$1: names the deleted shard"
    expect_err "rerun it with the same HF_DIR and options" "$1: says how to finish"
    if grep -qE "use --force|rerun with --force|with --force to" "$SCRATCH/last.err"; then
        bad "$1: suggests --force: $(head -c 300 "$SCRATCH/last.err")"
    else
        ok "$1: does not suggest --force"
    fi
    [ "$(tree_digest "$out")" = "$before" ] && ok "$1: OUT_DIR untouched" || bad "$1: OUT_DIR changed"
}

run 1 "other options, no --force: refused" "$AIRLLM_SPLIT" -c zstd "$hf" "$out"
no_force_offered "other options"
run 1 "other options with --force: refused" "$AIRLLM_SPLIT" --force -c zstd "$hf" "$out"
no_force_offered "other options with --force"
run 1 "another checkpoint with --force: refused" "$AIRLLM_SPLIT" --force "$MODELS/stories260K" "$out"
no_force_offered "another checkpoint with --force"
run 1 "airllm-quant with --force: refused" "$AIRLLM_QUANT" --force "$hf" "$out"
no_force_offered "airllm-quant with --force"

run 0 "the interrupted command finishes the run" "$AIRLLM_SPLIT" -q --delete-original "$hf" "$out"
run 0 "which verifies byte-exact" "$AIRLLM_VERIFY" -q --against "$pristine" "$out"
# Once finished, replacing it is a deliberate act again.
run 0 "a finished output can then be replaced with --force" \
    "$AIRLLM_SPLIT" -q --force "$MODELS/stories260K" "$out"
finish
