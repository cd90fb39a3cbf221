#!/usr/bin/env bash
# Issue 16, item 4: bytes of a tensor that the split already read are
# overwritten while it runs (at a precise step, through AIRLLM_FAULT_HOOK).
# The split must not exit 0, must write no manifest, and must never delete
# the changed shard: with --delete-original, the shard is re-hashed against
# the digest computed while reading it before it is deleted, which catches
# a change that kept the mtime too.
. "$(dirname "$0")/../testlib.sh"

sharded="$MODELS/stories260K-bf16-sharded"
single="$MODELS/stories260K"
s1=model-00001-of-00003.safetensors

# run_poking WHEN FILE OFFSET keep|touch OPTS...: split HF -> OUT; at the
# first durable step at which the journal holds a line containing WHEN, 4
# bytes of FILE at OFFSET are overwritten (mtime kept or not), once.
run_poking() {
    local when=$1 file=$2 off=$3 mode=$4
    shift 4
    rm -f "$SCRATCH/poked"
    WHEN="$when" F="$file" OFF="$off" MODE="$mode" M="$SCRATCH/poked" \
        J="$SCRATCH/out/.airllm-split/journal" \
        AIRLLM_FAULT_HOOK='[ -e "$M" ] && exit 0; grep -qF -- "$WHEN" "$J" 2>/dev/null || exit 0
            cp -p "$F" "$M.ref"
            printf "\132\245\132\245" | dd of="$F" bs=1 seek="$OFF" conv=notrunc status=none
            [ "$MODE" = keep ] && touch -r "$M.ref" "$F"
            cp "$F" "$M"' \
        "$AIRLLM_SPLIT" "$@" "$SCRATCH/hf" "$SCRATCH/out" >"$SCRATCH/last.out" 2>"$SCRATCH/last.err"
    LAST_RC=$?
}

fresh() {
    rm -rf "$SCRATCH/hf" "$SCRATCH/out"
    cp -r "$1" "$SCRATCH/hf"
    chmod -R u+w "$SCRATCH/hf"
}

# check DESC FILE: the run failed, the source was changed by the hook,
# and it is still there with its new bytes; no manifest
check() {
    [ -e "$SCRATCH/poked" ] && ok "$1: the source was changed mid-run" ||
        bad "$1: the hook never ran (no AIRLLM_FAULT_HOOK support?)"
    [ "$LAST_RC" -eq 1 ] && ok "$1: exit 1" || bad "$1: exit $LAST_RC, expected 1: $(head -c 400 "$SCRATCH/last.err")"
    if grep -qE "changed since it was read|modified while it was being read" "$SCRATCH/last.err" &&
        grep -qF "$2" "$SCRATCH/last.err"; then
        ok "$1: the message names the shard and the change"
    else
        bad "$1: message: $(head -c 400 "$SCRATCH/last.err")"
    fi
    [ ! -f "$SCRATCH/out/manifest.json" ] && ok "$1: no manifest" || bad "$1: manifest written"
    if [ -f "$SCRATCH/hf/$2" ] && cmp -s "$SCRATCH/hf/$2" "$SCRATCH/poked"; then
        ok "$1: the changed shard is kept, new bytes and all"
    else
        bad "$1: the changed shard was deleted or altered"
    fi
}

# Shard 1 is read to the end and journaled; before it can be deleted, its
# embedding changes with the mtime kept: only the re-hash can tell.
fresh "$sharded"
run_poking "source 32:$s1" "$SCRATCH/hf/$s1" "$(offset_of "$SCRATCH/hf/$s1" model.embed_tokens.)" keep \
    -q --delete-original
check "--delete-original, mtime kept" "$s1"
# The rerun sees that the shard is not what the journal recorded.
run 1 "the rerun refuses too" "$AIRLLM_SPLIT" -q --delete-original "$SCRATCH/hf" "$SCRATCH/out"
expect_err "changed since it was read" "the rerun says why"
[ -f "$SCRATCH/hf/$s1" ] && ok "the rerun deletes nothing" || bad "the rerun deleted $s1"

# The same with the mtime changed.
fresh "$sharded"
run_poking "source 32:$s1" "$SCRATCH/hf/$s1" "$(offset_of "$SCRATCH/hf/$s1" model.embed_tokens.)" touch \
    -q --delete-original
check "--delete-original, mtime changed" "$s1"

# Without --delete-original: a manifest would record a digest the shard
# no longer has.
fresh "$sharded"
run_poking "source 32:$s1" "$SCRATCH/hf/$s1" "$(offset_of "$SCRATCH/hf/$s1" model.embed_tokens.)" touch -q
check "no --delete-original" "$s1"

# One file: the embedding changes once its unit is written, while the
# reader may still be reading the rest of the file.
fresh "$single"
run_poking "unit 10:embed.airc" "$SCRATCH/hf/model.safetensors" \
    "$(offset_of "$SCRATCH/hf/model.safetensors" model.embed_tokens.)" touch -q --delete-original
check "single file, --delete-original" model.safetensors
fresh "$single"
run_poking "unit 10:embed.airc" "$SCRATCH/hf/model.safetensors" \
    "$(offset_of "$SCRATCH/hf/model.safetensors" model.embed_tokens.)" keep -q --delete-original
check "single file, --delete-original, mtime kept" model.safetensors

# A run that nothing disturbs still works with the hook set.
fresh "$sharded"
run_poking "no such line" "$SCRATCH/hf/$s1" 0 keep -q --delete-original
[ "$LAST_RC" -eq 0 ] && ok "undisturbed run: exit 0" || bad "undisturbed run: exit $LAST_RC: $(head -c 300 "$SCRATCH/last.err")"
run 0 "undisturbed run verifies" "$AIRLLM_VERIFY" -q --against "$sharded" "$SCRATCH/out"
finish
