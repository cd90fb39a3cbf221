#!/usr/bin/env bash
# --force and where OUT_DIR is: it must never hold the checkpoint. A Hugging
# Face cache snapshot's files are links into ../../blobs/, so OUT_DIR=blobs
# once deleted every shard; an OUT_DIR above HF_DIR lost its regular files
# before the refusal of the HF_DIR folder. Every refusal comes before the
# first deletion, and files are compared by device and inode, not by name.
. "$(dirname "$0")/../testlib.sh"

src="$MODELS/stories260K-bf16-sharded"

# --- item 1: OUT_DIR is the cache's blobs folder
repo="$SCRATCH/cache/models--t--stories"
make_cache "$src" "$repo" r1
snap="$repo/snapshots/r1"
before=$(tree_digest "$SCRATCH/cache")
links=$(ls -l "$snap" | md5sum)
run 1 "--force SNAPSHOT BLOBS is refused" "$AIRLLM_SPLIT" --force "$snap" "$repo/blobs"
expect_err "inside OUT_DIR" "names the shard whose data is in OUT_DIR"
expect_err "model-00001-of-00003.safetensors" "names the file"
run 1 "without --force too" "$AIRLLM_SPLIT" "$snap" "$repo/blobs"
expect_err "inside OUT_DIR" "says why"
run 1 "quant --force SNAPSHOT BLOBS is refused" "$AIRLLM_QUANT" --force "$snap" "$repo/blobs"
[ "$before" = "$(tree_digest "$SCRATCH/cache")" ] && [ "$links" = "$(ls -l "$snap" | md5sum)" ] &&
    ok "every blob and link is intact, nothing added" || bad "the cache changed"
run 0 "the checkpoint still converts" "$AIRLLM_SPLIT" -q "$snap" "$SCRATCH/from_cache"
run 0 "and verifies" "$AIRLLM_VERIFY" -q --against "$src" "$SCRATCH/from_cache"

# One shard's blob alone inside OUT_DIR (a config linked into it).
mkdir -p "$SCRATCH/o1"
cp -a "$src" "$SCRATCH/hf1"
mv "$SCRATCH/hf1/config.json" "$SCRATCH/o1/config.json"
ln -s "$SCRATCH/o1/config.json" "$SCRATCH/hf1/config.json"
echo keep >"$SCRATCH/o1/notes.txt"
run 1 "--force into the folder holding the config's real file is refused" \
    "$AIRLLM_SPLIT" --force --follow-symlinks "$SCRATCH/hf1" "$SCRATCH/o1"
expect_err "config.json: its data is" "names the config"
[ -f "$SCRATCH/o1/config.json" ] && [ -f "$SCRATCH/o1/notes.txt" ] && ok "nothing in it was deleted" ||
    bad "files deleted: $(ls -A "$SCRATCH/o1")"

# A hard link to a shard in OUT_DIR: the same file, refused by inode.
mkdir -p "$SCRATCH/o2"
cp -a "$src" "$SCRATCH/hf2"
ln "$SCRATCH/hf2/model-00002-of-00003.safetensors" "$SCRATCH/o2/copy.safetensors"
echo keep >"$SCRATCH/o2/a.txt"
run 1 "--force over a hard link to a shard is refused" "$AIRLLM_SPLIT" --force "$SCRATCH/hf2" "$SCRATCH/o2"
expect_err "the same file" "says it is the checkpoint's own file"
[ -f "$SCRATCH/o2/a.txt" ] && [ -f "$SCRATCH/o2/copy.safetensors" ] && ok "nothing deleted" || bad "o2: $(ls -A "$SCRATCH/o2")"

# --- item 2: OUT_DIR a parent of HF_DIR
par="$SCRATCH/parent"
mkdir -p "$par"
cp -a "$src" "$par/hf"
echo precious >"$par/notes.txt"
before=$(tree_digest "$par")
run 1 "--force with OUT_DIR the parent of HF_DIR is refused" "$AIRLLM_SPLIT" --force "$par/hf" "$par"
expect_err "OUT_DIR contains the checkpoint directory" "says OUT_DIR contains HF_DIR"
[ "$before" = "$(tree_digest "$par")" ] && [ ! -e "$par/.airllm-split" ] &&
    ok "nothing deleted, nothing added" || bad "parent changed: $(ls -A "$par")"
run 1 "also via a path with .." "$AIRLLM_SPLIT" --force "$par/hf" "$par/hf/.."
run 1 "also two levels up" "$AIRLLM_SPLIT" --force "$par/hf" "$SCRATCH"
ln -s "$par/hf" "$SCRATCH/hflink"
run 1 "also when HF_DIR is a link into OUT_DIR" "$AIRLLM_SPLIT" --force "$SCRATCH/hflink" "$par"
run 1 "quant too" "$AIRLLM_QUANT" --force "$par/hf" "$par"
[ "$before" = "$(tree_digest "$par")" ] && ok "still nothing deleted" || bad "parent changed"

# --- check everything before deleting anything
busy="$SCRATCH/busy"
mkdir -p "$busy/sub"
echo one >"$busy/a.txt"
echo two >"$busy/z.txt"
before=$(tree_digest "$busy")
run 1 "--force over a folder with a subdirectory is refused" "$AIRLLM_SPLIT" --force "$src" "$busy"
expect_err "refusing to remove sub (not a regular file)" "names the subdirectory"
[ "$before" = "$(tree_digest "$busy")" ] && [ -d "$busy/sub" ] && ! [ -e "$busy/.airllm-split" ] &&
    ok "no file deleted before the refusal" || bad "busy changed: $(ls -A "$busy")"
# The same inside the state folder of an interrupted run.
st="$SCRATCH/st"
(AIRLLM_FAULT_STEP=6 "$AIRLLM_SPLIT" -q "$src" "$st" 2>/dev/null & wait $!) 2>/dev/null
mkdir -p "$st/.airllm-split/odd"
# (the lock file records the pid of whichever run holds it: not compared)
before=$(tree_digest "$st" | grep -v '/lock$')
run 1 "--force over a state folder with a subdirectory is refused" "$AIRLLM_SPLIT" --force --compress zstd "$src" "$st"
expect_err "not a regular file" "says why"
[ "$before" = "$(tree_digest "$st" | grep -v '/lock$')" ] && ok "nothing deleted there either" || bad "st changed"
rmdir "$st/.airllm-split/odd"
run 0 "--force replaces the interrupted run" "$AIRLLM_SPLIT" -q --force --compress zstd "$src" "$st"
run 0 "which verifies" "$AIRLLM_VERIFY" -q --against "$src" "$st"
finish
