#!/usr/bin/env bash
# Round trips on the real checkpoints in ../shared/models: split, then
# verify --against is byte-exact; splitting twice gives identical bytes;
# the same with zstd, whatever --jobs is.
. "$(dirname "$0")/testlib.sh"

for model in stories260K stories260K-bf16-sharded; do
    src="$MODELS/$model"
    a="$SCRATCH/$model.a" b="$SCRATCH/$model.b"
    run 0 "$model: split" "$AIRLLM_SPLIT" -q "$src" "$a"
    run 0 "$model: verify --against is byte-exact" "$AIRLLM_VERIFY" --against "$src" "$a"
    run 0 "$model: split again" "$AIRLLM_SPLIT" -q "$src" "$b"
    if diff -r "$a" "$b" >/dev/null; then ok "$model: two splits are byte-identical"
    else bad "$model: two splits differ"; fi
    run 0 "$model: verify --jobs 2" "$AIRLLM_VERIFY" --jobs 2 "$a"

    za="$SCRATCH/$model.za" zb="$SCRATCH/$model.zb"
    run 0 "$model: split --compress zstd" "$AIRLLM_SPLIT" -q --compress zstd "$src" "$za"
    run 0 "$model: zstd verify --against is byte-exact" "$AIRLLM_VERIFY" --against "$src" "$za"
    run 0 "$model: split --compress zstd:9 --jobs 2" \
        "$AIRLLM_SPLIT" -q --compress zstd:9 --jobs 2 "$src" "$zb"
    run 0 "$model: zstd:9 verify --against" "$AIRLLM_VERIFY" --against "$src" "$zb"
    rm -rf "$zb"
    run 0 "$model: split --compress zstd --jobs 2" \
        "$AIRLLM_SPLIT" -q --compress zstd --jobs 2 "$src" "$zb"
    if diff -r "$za" "$zb" >/dev/null; then ok "$model: zstd output independent of --jobs"
    else bad "$model: zstd output depends on --jobs"; fi
    if grep -q '"encoding":	"zstd"' "$za/manifest.json"; then ok "$model: zstd tensors present"
    else bad "$model: no tensor was stored as zstd"; fi
    raw=$(du -sb --exclude=manifest.json "$a" | cut -f1)
    z=$(du -sb --exclude=manifest.json "$za" | cut -f1)
    echo "size: $model raw $raw bytes, zstd $z bytes, ratio $(awk "BEGIN{printf \"%.3f\", $z/$raw}")"

    # --json summary is machine-readable and --dry-run writes nothing
    run 0 "$model: --json summary" "$AIRLLM_SPLIT" --json "$src" "$SCRATCH/$model.json"
    if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["status"]=="ok" and d["units"]>0' "$SCRATCH/last.out"; then
        ok "$model: --json parses"; else bad "$model: --json output: $(head -c 300 "$SCRATCH/last.out")"; fi
    run 0 "$model: --dry-run" "$AIRLLM_SPLIT" --dry-run "$src" "$SCRATCH/$model.dry"
    if [ ! -e "$SCRATCH/$model.dry" ] && grep -q "layer.4" "$SCRATCH/last.out"; then
        ok "$model: --dry-run prints the plan and writes nothing"
    else bad "$model: --dry-run wrote output or printed no plan"; fi
done

# Mixed dtypes: the safetensors library sorts a file by dtype before name, so
# the F32 norms of every layer come before any BF16 weight and every layer is
# open at once. (A pool of write buffers held per open unit once deadlocked
# here: hence the timeout.)
mixed="$SCRATCH/mixed"
python3 "$SRC_DIR/tests/make_llama_checkpoint.py" "$mixed" --layers 8 --shards 2 \
    --dtype BF16 --norm-dtype F32 --seed 3
run 0 "mixed dtypes, dtype-sorted shards: split" timeout 60 "$AIRLLM_SPLIT" -q "$mixed" "$SCRATCH/mixed.out"
run 0 "mixed dtypes: verify --against" "$AIRLLM_VERIFY" --against "$mixed" "$SCRATCH/mixed.out"
run 0 "mixed dtypes: split --compress zstd" timeout 60 "$AIRLLM_SPLIT" -q --compress zstd "$mixed" "$SCRATCH/mixed.z"
run 0 "mixed dtypes: zstd verify --against" "$AIRLLM_VERIFY" --against "$mixed" "$SCRATCH/mixed.z"

# The tied LM head is recorded, not duplicated.
if python3 - "$SCRATCH/stories260K.a/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
head = [u for u in m["units"] if u["kind"] == "lm_head"][0]
assert "file" not in head and head["tied_to"] == "model.embed_tokens.weight", head
assert [u["layer"] for u in m["units"] if u["kind"] == "layer"] == [0, 1, 2, 3, 4]
PY
then ok "tied embeddings recorded as tied_to, no lm_head file"; else bad "tied lm_head"; fi
finish
