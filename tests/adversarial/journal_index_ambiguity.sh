#!/usr/bin/env bash
# Issue 18: with both model.safetensors and model.safetensors.index.json in
# HF_DIR, the split silently took the index. Which file is the model is a
# guess, so it must refuse, name both files and say how to resolve it,
# before it creates anything; an index that names model.safetensors as its
# shard is not ambiguous.
. "$(dirname "$0")/../testlib.sh"

hf="$SCRATCH/hf"
cp -r "$MODELS/stories260K-bf16-sharded" "$hf"
chmod -R u+w "$hf"
cp "$MODELS/stories260K/model.safetensors" "$hf/"
before=$(tree_digest "$hf")
run 1 "split refuses the ambiguity" "$AIRLLM_SPLIT" --delete-original "$hf" "$SCRATCH/out"
expect_err "model.safetensors and model.safetensors.index.json" "the message names both files"
expect_err "aside" "the message says how to resolve it"
[ ! -e "$SCRATCH/out" ] && ok "OUT_DIR not created" || bad "OUT_DIR created"
[ "$(tree_digest "$hf")" = "$before" ] && ok "HF_DIR untouched" || bad "HF_DIR changed"
run 1 "--dry-run refuses too" "$AIRLLM_SPLIT" -n "$hf" "$SCRATCH/out"
run 1 "airllm-quant refuses too" "$AIRLLM_QUANT" "$hf" "$SCRATCH/qout"

mv "$hf/model.safetensors" "$SCRATCH/"
run 0 "with the single file moved aside, the shards convert" "$AIRLLM_SPLIT" -q "$hf" "$SCRATCH/out"
run 0 "and verify" "$AIRLLM_VERIFY" -q --against "$MODELS/stories260K-bf16-sharded" "$SCRATCH/out"

# An index whose one shard is model.safetensors.
one="$SCRATCH/one"
cp -r "$MODELS/stories260K" "$one"
chmod -R u+w "$one"
python3 - "$one" <<'PY'
import json, struct, sys
d = sys.argv[1]
f = open(d + "/model.safetensors", "rb")
n = struct.unpack("<Q", f.read(8))[0]
names = [k for k in json.loads(f.read(n)) if k != "__metadata__"]
json.dump({"metadata": {}, "weight_map": {k: "model.safetensors" for k in names}},
          open(d + "/model.safetensors.index.json", "w"))
PY
run 0 "an index naming model.safetensors is not ambiguous" "$AIRLLM_SPLIT" -q "$one" "$SCRATCH/one.out"
finish
