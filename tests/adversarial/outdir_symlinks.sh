#!/usr/bin/env bash
# Checkpoint files that are symbolic links out of HF_DIR: a
# tokenizer_config.json linked to /etc/passwd was copied into OUT_DIR and
# published in the manifest. Links whose real file is outside HF_DIR are
# refused unless --follow-symlinks; a Hugging Face cache snapshot's links
# into its own ../../blobs/ are the legitimate case and always followed.
. "$(dirname "$0")/../testlib.sh"

src="$MODELS/stories260K-bf16-sharded"
single="$MODELS/stories260K"

# --- an auxiliary file linked to /etc/passwd
ev="$SCRATCH/evil"
cp -a "$single" "$ev"
ln -sf /etc/passwd "$ev/tokenizer_config.json"
run 1 "a tokenizer_config.json linked to /etc/passwd is refused" "$AIRLLM_SPLIT" "$ev" "$SCRATCH/ev_out"
expect_err "tokenizer_config.json: links to /etc/passwd, outside HF_DIR" "names the file and where it points"
expect_err "--follow-symlinks" "names the option that allows it"
[ ! -e "$SCRATCH/ev_out" ] && ok "nothing was written" || bad "OUT_DIR created: $(ls -A "$SCRATCH/ev_out")"
run 1 "quant refuses it too" "$AIRLLM_QUANT" "$ev" "$SCRATCH/ev_q"
[ ! -e "$SCRATCH/ev_q" ] && ok "quant wrote nothing" || bad "quant OUT_DIR created"
run 1 "a dry run refuses it too" "$AIRLLM_SPLIT" --dry-run "$ev" "$SCRATCH/ev_out"

# --- a shard and the config linked outside
outside="$SCRATCH/elsewhere"
mkdir -p "$outside"
sh="$SCRATCH/shardlink"
cp -a "$src" "$sh"
mv "$sh/model-00002-of-00003.safetensors" "$outside/"
ln -s "$outside/model-00002-of-00003.safetensors" "$sh/model-00002-of-00003.safetensors"
run 1 "a shard linked outside HF_DIR is refused" "$AIRLLM_SPLIT" "$sh" "$SCRATCH/sh_out"
expect_err "model-00002-of-00003.safetensors: links to" "names the shard"
cf="$SCRATCH/configlink"
cp -a "$single" "$cf"
mv "$cf/config.json" "$outside/config.json"
ln -s "../elsewhere/config.json" "$cf/config.json"
run 1 "a config.json linked outside HF_DIR is refused" "$AIRLLM_SPLIT" "$cf" "$SCRATCH/cf_out"
expect_err "config.json: links to" "names the config"

# --- --follow-symlinks: the user says so
run 0 "--follow-symlinks reads the linked shard" "$AIRLLM_SPLIT" -q --follow-symlinks "$sh" "$SCRATCH/sh_out"
run 0 "and the output verifies" "$AIRLLM_VERIFY" -q --against "$src" "$SCRATCH/sh_out"
run 0 "a rerun is a no-op (the option is not part of the output's options)" \
    "$AIRLLM_SPLIT" --follow-symlinks "$sh" "$SCRATCH/sh_out"
expect_err "already complete" "says so"
# --delete-original through a link outside HF_DIR deletes the link only.
run 0 "--follow-symlinks --delete-original" "$AIRLLM_SPLIT" -q --follow-symlinks --delete-original "$sh" "$SCRATCH/sh_del"
[ -f "$outside/model-00002-of-00003.safetensors" ] && ok "the file outside HF_DIR is kept" || bad "the file outside HF_DIR was deleted"
[ -z "$(ls -A "$sh")" ] && ok "every checkpoint file and link in HF_DIR is gone" || bad "left: $(ls -A "$sh")"
run 0 "that output verifies" "$AIRLLM_VERIFY" -q --against "$src" "$SCRATCH/sh_del"

# --- links that stay inside HF_DIR are fine
in="$SCRATCH/inside"
cp -a "$single" "$in"
mkdir "$in/files"
mv "$in/tokenizer.json" "$in/files/"
ln -s files/tokenizer.json "$in/tokenizer.json"
run 0 "a link to a file inside HF_DIR is followed" "$AIRLLM_SPLIT" -q "$in" "$SCRATCH/in_out"
run 0 "and verifies" "$AIRLLM_VERIFY" -q --against "$single" "$SCRATCH/in_out"

# --- the Hugging Face cache layout is followed without the option
repo="$SCRATCH/hub/models--t--stories"
make_cache "$src" "$repo" 0123abcd
run 0 "a cache snapshot converts without --follow-symlinks" "$AIRLLM_SPLIT" -q "$repo/snapshots/0123abcd" "$SCRATCH/c_out"
run 0 "and verifies" "$AIRLLM_VERIFY" -q --against "$src" "$SCRATCH/c_out"
run 0 "quant too" "$AIRLLM_QUANT" -q "$repo/snapshots/0123abcd" "$SCRATCH/c_q"
# ...but only into its own repo's blobs/
other="$SCRATCH/hub/models--t--other"
make_cache "$single" "$other" ffff
rm "$repo/snapshots/0123abcd/tokenizer.json"
ln -s "../../../models--t--other/blobs/$(sha256sum "$single/tokenizer.json" | cut -c1-64)" \
    "$repo/snapshots/0123abcd/tokenizer.json"
run 1 "a snapshot link into another repo's blobs is refused" "$AIRLLM_SPLIT" "$repo/snapshots/0123abcd" "$SCRATCH/c_out2"
expect_err "tokenizer.json: links to" "names it"
finish
