#!/usr/bin/env bash
# Issue 16, item 3: a split is interrupted, then a source it had already
# converted changes (4 bytes, with or without an mtime change), then the
# run is resumed with --delete-original. The resumed run must prove that
# each source still holds the bytes it journaled before it keeps a unit or
# deletes anything: it refuses, names the shard, and touches nothing. With
# the source restored, the resume finishes and verifies byte-exact.
. "$(dirname "$0")/../testlib.sh"

pristine="$MODELS/stories260K-bf16-sharded"
s1=model-00001-of-00003.safetensors
s2=model-00002-of-00003.safetensors

# poke FILE OFFSET keep|touch: overwrite 4 bytes; keep the mtime or not
poke() {
    cp -p "$1" "$SCRATCH/mtime.ref"
    printf '\x5a\xa5\x5a\xa5' | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
    [ "$3" = keep ] && touch -r "$SCRATCH/mtime.ref" "$1"
    rm -f "$SCRATCH/mtime.ref"
}

# interrupt WHEN: split HF -> OUT, killed at the first durable step at
# which the journal holds a line containing WHEN
interrupt() {
    rm -rf "$SCRATCH/hf" "$SCRATCH/out"
    cp -r "$pristine" "$SCRATCH/hf"
    chmod -R u+w "$SCRATCH/hf"
    (KILL_WHEN="$1" J="$SCRATCH/out/.airllm-split/journal" \
        AIRLLM_FAULT_HOOK='grep -qF -- "$KILL_WHEN" "$J" 2>/dev/null && kill -9 $PPID; :' \
        "$AIRLLM_SPLIT" -q "$SCRATCH/hf" "$SCRATCH/out" >/dev/null 2>&1 &
        wait $!) 2>/dev/null
    local rc=$?
    [ $rc -eq 137 ] && ok "interrupted once the journal holds \"$1\"" ||
        bad "the split was not interrupted at \"$1\" (exit $rc)"
}

# refused_untouched DESC: the resume with --delete-original refuses and
# changes nothing in HF_DIR or OUT_DIR
refused_untouched() {
    local hf_before out_before
    hf_before=$(tree_digest "$SCRATCH/hf")
    out_before=$(tree_digest "$SCRATCH/out")
    run 1 "$1: the resume with --delete-original refuses" \
        "$AIRLLM_SPLIT" --delete-original "$SCRATCH/hf" "$SCRATCH/out"
    expect_err "$2: changed since it was read" "$1: the message names the changed shard"
    [ "$(tree_digest "$SCRATCH/hf")" = "$hf_before" ] && ok "$1: HF_DIR untouched, nothing deleted" ||
        bad "$1: HF_DIR changed"
    [ "$(tree_digest "$SCRATCH/out")" = "$out_before" ] && ok "$1: OUT_DIR untouched" ||
        bad "$1: OUT_DIR changed"
    [ ! -f "$SCRATCH/out/manifest.json" ] && ok "$1: no manifest" || bad "$1: manifest written"
}

finishes_after_restore() {
    cp "$pristine/$2" "$SCRATCH/hf/$2"
    run 0 "$1: with the shard restored, the resume finishes" \
        "$AIRLLM_SPLIT" -q --delete-original "$SCRATCH/hf" "$SCRATCH/out"
    run 0 "$1: and the output verifies byte-exact" \
        "$AIRLLM_VERIFY" -q --against "$pristine" "$SCRATCH/out"
    ls "$SCRATCH/hf"/*.safetensors >/dev/null 2>&1 && bad "$1: shards left" || ok "$1: shards deleted"
}

# A: layer 1 was converted from shard 2, which was not finished; a tensor
# of layer 1 changes, mtime kept.
interrupt "unit 16:layer.00001.airc"
poke "$SCRATCH/hf/$s2" "$(offset_of "$SCRATCH/hf/$s2" model.layers.1.)" keep
refused_untouched "partly read shard, mtime kept" "$s2"
finishes_after_restore "partly read shard" "$s2"

# B: the same with the mtime changed too.
interrupt "unit 16:layer.00001.airc"
poke "$SCRATCH/hf/$s2" "$(offset_of "$SCRATCH/hf/$s2" model.layers.1.)" touch
refused_untouched "partly read shard, mtime changed" "$s2"

# C: shard 1 was read to the end and journaled (not deleted: no
# --delete-original then); its embedding changes, mtime kept. The resume
# would not read it again, only delete it.
interrupt "source 32:$s1"
poke "$SCRATCH/hf/$s1" "$(offset_of "$SCRATCH/hf/$s1" model.embed_tokens.)" keep
refused_untouched "finished shard, mtime kept" "$s1"
finishes_after_restore "finished shard" "$s1"

# D: without --delete-original the resume refuses as well: its manifest
# would describe bytes that the units do not hold.
interrupt "unit 16:layer.00001.airc"
poke "$SCRATCH/hf/$s2" "$(offset_of "$SCRATCH/hf/$s2" model.layers.1.)" keep
run 1 "plain resume after a change refuses" "$AIRLLM_SPLIT" "$SCRATCH/hf" "$SCRATCH/out"
expect_err "changed since it was read" "plain resume: says why"
expect_err "rerun with --force" "plain resume: nothing was deleted, so --force is offered"
run 0 "--force converts the shard as it is now" \
    "$AIRLLM_SPLIT" -q --force "$SCRATCH/hf" "$SCRATCH/out"
run 0 "which verifies against it" "$AIRLLM_VERIFY" -q --against "$SCRATCH/hf" "$SCRATCH/out"
finish
