#!/usr/bin/env bash
# Corrupted outputs: airllm-verify must catch each one, exit 1 and name the
# file. A corruption that leaves the digests consistent (data, check block
# and manifest edited together) must still be caught by --against.
. "$(dirname "$0")/testlib.sh"

src="$MODELS/stories260K-bf16-sharded"
base="$SCRATCH/base"
"$AIRLLM_SPLIT" -q "$src" "$base" || { bad "split failed"; finish; exit 1; }
zbase="$SCRATCH/zbase"
"$AIRLLM_SPLIT" -q --compress zstd "$src" "$zbase" || { bad "zstd split failed"; finish; exit 1; }

fresh() { rm -rf "$SCRATCH/case"; cp -a "${1:-$base}" "$SCRATCH/case"; C="$SCRATCH/case"; }
# flip_bit FILE OFFSET: xor one bit at OFFSET
flip_bit() {
    python3 - "$1" "$2" <<'PY'
import sys
p, off = sys.argv[1], int(sys.argv[2])
with open(p, "r+b") as f:
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x10]))
PY
}
# expect_caught DESC SUBSTRING [verify options]
expect_caught() {
    local desc=$1 what=$2
    shift 2
    run 1 "$desc: verify exits 1" "$AIRLLM_VERIFY" "$@" "$C"
    expect_err "$what" "$desc: names the problem ($what)"
}

run 0 "pristine output verifies" "$AIRLLM_VERIFY" "$base"

fresh; flip_bit "$C/layer.00002.airc" 70000
expect_caught "bit flipped in layer data" "layer.00002.airc: SHA-256 mismatch"
fresh; flip_bit "$C/layer.00002.airc" 20
expect_caught "bit flipped in a container header" "layer.00002.airc"
fresh; flip_bit "$C/embed.airc" 8200
expect_caught "bit flipped in the embeddings" "embed.airc"
fresh; flip_bit "$C/tokenizer.json" 100
expect_caught "bit flipped in a copied file" "tokenizer.json: SHA-256 mismatch"
fresh; truncate -s -4096 "$C/layer.00001.airc"
expect_caught "truncated unit" "layer.00001.airc: size"
expect_caught "truncated unit (--quick)" "truncated" --quick
fresh; truncate -s 0 "$C/norm.airc"
expect_caught "emptied unit" "norm.airc"
fresh; rm "$C/layer.00003.airc"
expect_caught "missing unit" "layer.00003.airc: missing"
expect_caught "missing unit (--quick)" "layer.00003.airc: missing" --quick
fresh; rm "$C/config.json"
expect_caught "missing config.json" "config.json: missing"
fresh; echo hello > "$C/notes.txt"
expect_caught "extra file" "notes.txt: extra file"
fresh; rm "$C/manifest.json"
expect_caught "missing manifest" "incomplete"
fresh; sed -i 's/"size":\t\([0-9]*\)/"size":\t1\1/' "$C/manifest.json"
expect_caught "edited manifest (sizes)" "the manifest says"
fresh; sed -i '0,/"sha256":\t"\(.\)/s//"sha256":\t"0\1/' "$C/manifest.json"
expect_caught "edited manifest (malformed digest)" "sha256"
fresh; python3 - "$C/manifest.json" <<'PY'
import json, sys
p = sys.argv[1]; m = json.load(open(p))
u = m["units"][1]; u["sha256"] = ("f" if u["sha256"][0] != "f" else "e") + u["sha256"][1:]
json.dump(m, open(p, "w"), indent=1)
PY
expect_caught "edited manifest (digest)" "SHA-256 mismatch"
fresh; python3 - "$C/manifest.json" <<'PY'
import json, sys
p = sys.argv[1]; m = json.load(open(p))
m["tensors"] = [t for t in m["tensors"] if t["name"] != "model.layers.1.mlp.up_proj.weight"]
json.dump(m, open(p, "w"), indent=1)
PY
expect_caught "edited manifest (tensor removed)" "layer.00001.airc: file holds"
fresh; python3 - "$C/manifest.json" <<'PY'
import json, sys
p = sys.argv[1]; m = json.load(open(p))
m["model"]["num_layers"] = 4
json.dump(m, open(p, "w"), indent=1)
PY
expect_caught "edited manifest (layer count)" "num_hidden_layers"
fresh; printf '{"format": "airllm", ' > "$C/manifest.json"
expect_caught "manifest cut short" "manifest.json"

# re_sign DIR FILE: the manifest's digest of FILE made to match it
re_sign() {
    python3 - "$1" "$2" <<'PY'
import hashlib, json, sys, os
d, f = sys.argv[1], sys.argv[2]
p = os.path.join(d, "manifest.json"); m = json.load(open(p))
for u in m["units"]:
    if u.get("file") == f:
        u["sha256"] = hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
json.dump(m, open(p, "w"), indent=1)
PY
}
# A weight changed and the manifest re-signed: the unit's own check block
# (format 1.2) still catches it, and names the tensor.
fresh; flip_bit "$C/layer.00000.airc" 40000
re_sign "$C" layer.00000.airc
expect_caught "re-signed manifest, stale check block" '"model.layers.0.mlp.gate_proj.weight": XXH3'

# Consistent forgery: a weight changed in a copy of the source, split, its
# unit file (with a matching check block) put in place and the manifest
# re-signed. Only the comparison with the source can notice.
rm -rf "$SCRATCH/forged-src" "$SCRATCH/forged"
cp -r "$src" "$SCRATCH/forged-src"
python3 - "$SCRATCH/forged-src" model.layers.0.mlp.gate_proj.weight <<'PY'
import json, os, struct, sys
d, name = sys.argv[1], sys.argv[2]
for fn in sorted(os.listdir(d)):
    if not fn.endswith(".safetensors"):
        continue
    p = os.path.join(d, fn)
    with open(p, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        if name in h:
            at = 8 + n + h[name]["data_offsets"][0] + 100
            f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 0x10]))
PY
"$AIRLLM_SPLIT" -q "$SCRATCH/forged-src" "$SCRATCH/forged"
fresh; cp "$SCRATCH/forged/layer.00000.airc" "$C/layer.00000.airc"
re_sign "$C" layer.00000.airc
run 0 "re-signed forgery passes the digest and checksum checks" "$AIRLLM_VERIFY" "$C"
expect_caught "re-signed forgery caught by --against" "bytes differ from the source" --against "$src"

# --against a source with a tensor the output lacks (an untied LM head)
python3 "$SRC_DIR/scripts/make_synthetic.py" --family llama-tied --out "$SCRATCH/tied" >/dev/null
python3 "$SRC_DIR/scripts/make_synthetic.py" --family llama --out "$SCRATCH/untied" >/dev/null
"$AIRLLM_SPLIT" -q "$SCRATCH/tied" "$SCRATCH/tied.out"
C="$SCRATCH/tied.out"
expect_caught "source tensor absent from the output" \
    'tensor "lm_head.weight": source tensor is missing from the output' --against "$SCRATCH/untied"

# zstd: a flipped bit inside a compressed tensor
fresh "$zbase"
off=$(python3 - "$C/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(1 if any(t["encoding"] == "zstd" for t in m["tensors"]) else 0)
PY
)
[ "$off" = 1 ] && ok "zstd output has compressed tensors" || bad "zstd output has no compressed tensor"
flip_bit "$C/layer.00001.airc" 9000
expect_caught "bit flipped in zstd data" "layer.00001.airc: SHA-256 mismatch"
expect_caught "bit flipped in zstd data (--against)" "layer.00001.airc" --against "$src"

# --json report lists the problems
fresh; rm "$C/norm.airc"
"$AIRLLM_VERIFY" --json "$C" >"$SCRATCH/report.json" 2>/dev/null
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["status"]=="failed" and any(p["file"]=="norm.airc" for p in d["problems"])' "$SCRATCH/report.json"; then
    ok "--json report names the missing file"; else bad "--json report: $(head -c 300 "$SCRATCH/report.json")"; fi
finish
