#!/usr/bin/env bash
# airllm-quant end to end: round trips on the shared models and every
# synthetic family (verify --against within the error bound, statistics
# recomputed independently by check_quant.py), converted input (raw and zstd)
# giving the same unit files as a checkpoint, determinism across --jobs,
# odd-sized tensors, refusals of bad input with nothing written, kills at
# every durable step then resume, and verify catching a wrong code.
. "$(dirname "$0")/testlib.sh"
: "${AIRLLM_QUANT:?set AIRLLM_QUANT to the airllm-quant binary}"
Q=$AIRLLM_QUANT
F32="$MODELS/stories260K"
BF16="$MODELS/stories260K-bf16-sharded"
CHECK="python3 $SRC_DIR/tests/check_quant.py"
S=$SCRATCH

units_digest() { (cd "$1" && sha256sum *.airc); }

# ---- round trips on the shared models ----
for src in "$F32" "$BF16"; do
    for args in "" "-t fp4" "-t int8" "-t nf4 --double-quant" "-t int8 -b 4096" \
                "-t fp4 -b 32 --double-quant --include embed"; do
        name="$(basename "$src") ${args:-nf4}"
        out="$S/rt"
        rm -rf "$out"
        run 0 "$name: quantize" "$Q" -q $args "$src" "$out"
        run 0 "$name: verify --against" "$AIRLLM_VERIFY" -q --against "$src" "$out"
        run 0 "$name: statistics recomputed" $CHECK "$out" "$src"
    done
done

# ---- what is quantized by default ----
rm -rf "$S/d"
"$Q" -q "$F32" "$S/d"
python3 - "$S/d/manifest.json" <<'EOF' && ok "default: layer linears quantized; embed, norms raw" || bad "default selection"
import json, sys
m = json.load(open(sys.argv[1]))
enc = {t["name"]: t["encoding"] for t in m["tensors"]}
assert enc["model.embed_tokens.weight"] == "raw"
assert enc["model.norm.weight"] == "raw"
assert enc["model.layers.0.input_layernorm.weight"] == "raw"
for k in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
    assert enc["model.layers.3.%s.weight" % k] == "nf4", k
assert m["format_version"] == "1.2" and m["tool"]["name"] == "airllm-quant"
EOF

# ---- every synthetic family, BF16 and F32 ----
fams=0
for fam in $(python3 "$SRC_DIR/scripts/make_synthetic.py" --list); do
    for dt in BF16 F32; do
        rm -rf "$S/syn" "$S/synq"
        python3 "$SRC_DIR/scripts/make_synthetic.py" --family "$fam" --dtype $dt --shards 2 \
            --out "$S/syn" >/dev/null
        if "$Q" -q -t int8 "$S/syn" "$S/synq" 2>"$S/err" &&
            "$AIRLLM_VERIFY" -q --against "$S/syn" "$S/synq" 2>>"$S/err" &&
            $CHECK "$S/synq" "$S/syn" >/dev/null 2>>"$S/err"; then
            fams=$((fams + 1))
        else
            bad "family $fam $dt: $(head -c 400 "$S/err")"
        fi
    done
done
[ $fams -ge 20 ] && ok "synthetic families: $fams family/dtype round trips" || bad "only $fams families"
# MoE routers stay exact.
rm -rf "$S/syn" "$S/synq"
python3 "$SRC_DIR/scripts/make_synthetic.py" --family mixtral --out "$S/syn" >/dev/null
"$Q" -q "$S/syn" "$S/synq"
grep -A8 '"model.layers.0.block_sparse_moe.gate.weight"' "$S/synq/manifest.json" |
    grep -q '"encoding":.*"raw"' && ok "mixtral: router kept raw" || bad "mixtral router quantized"
grep -A8 '"model.layers.0.block_sparse_moe.experts.1.w2.weight"' "$S/synq/manifest.json" |
    grep -q '"encoding":.*"nf4"' && ok "mixtral: experts quantized" || bad "mixtral experts not quantized"

# ---- odd sizes: short last block, odd element count ----
rm -rf "$S/odd" "$S/oddq"
python3 - "$S/odd" <<'EOF'
import json, os, random, struct, sys
d = sys.argv[1]
os.makedirs(d)
random.seed(7)
shapes = {"model.embed_tokens.weight": [11, 13], "model.norm.weight": [13],
          "model.layers.0.input_layernorm.weight": [13],
          "model.layers.0.self_attn.q_proj.weight": [13, 13],     # 169: odd
          "model.layers.0.mlp.down_proj.weight": [13, 31],        # 403
          "model.layers.0.mlp.up_proj.weight": [100, 41]}         # 4100 > 4096
hdr, blob = {}, b""
for k, s in shapes.items():
    n = 1
    for x in s:
        n *= x
    data = struct.pack("<%df" % n, *[random.gauss(0, 1) for _ in range(n)])
    hdr[k] = {"dtype": "F32", "shape": s, "data_offsets": [len(blob), len(blob) + len(data)]}
    blob += data
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
open(os.path.join(d, "model.safetensors"), "wb").write(struct.pack("<Q", len(h)) + h + blob)
json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": 1,
           "hidden_size": 13, "vocab_size": 11, "tie_word_embeddings": True},
          open(os.path.join(d, "config.json"), "w"))
EOF
for args in "-t nf4 -b 32" "-t fp4 -b 4096" "-t int8 -b 64 --double-quant" "-t nf4 -b 128 --double-quant"; do
    rm -rf "$S/oddq"
    run 0 "odd sizes $args: quantize" "$Q" -q $args --include embed "$S/odd" "$S/oddq"
    run 0 "odd sizes $args: verify --against" "$AIRLLM_VERIFY" -q --against "$S/odd" "$S/oddq"
    run 0 "odd sizes $args: statistics" $CHECK "$S/oddq" "$S/odd"
done

# ---- converted input: same unit files as from the checkpoint ----
rm -rf "$S/split" "$S/splitz" "$S/qa" "$S/qb" "$S/qc"
"$AIRLLM_SPLIT" -q "$BF16" "$S/split"
"$AIRLLM_SPLIT" -q -c zstd "$BF16" "$S/splitz"
"$Q" -q -t nf4 --double-quant "$BF16" "$S/qa"
run 0 "from a raw converted dir" "$Q" -q -t nf4 --double-quant "$S/split" "$S/qb"
run 0 "from a zstd converted dir" "$Q" -q -t nf4 --double-quant -j 2 "$S/splitz" "$S/qc"
[ "$(units_digest "$S/qa")" = "$(units_digest "$S/qb")" ] &&
    ok "raw converted input: unit files identical to the checkpoint's" || bad "raw converted input differs"
# From zstd, the tensors that stay unquantized keep their frames, so the
# files differ; the quantized tensors and their statistics must not.
python3 - "$S/qa/manifest.json" "$S/qc/manifest.json" <<'EOF' &&
import json, sys
a, c = (json.load(open(p)) for p in sys.argv[1:])
qa = {t["name"]: (t["quant"], t["stored_bytes"]) for t in a["tensors"] if "quant" in t}
qc = {t["name"]: (t["quant"], t["stored_bytes"]) for t in c["tensors"] if "quant" in t}
assert qa == qc and len(qa) == 35
assert any(t["encoding"] == "zstd" for t in c["tensors"])
EOF
    ok "zstd converted input: same quantized tensors and statistics, other tensors keep zstd" ||
    bad "zstd converted input: quantized tensors differ"
run 0 "zstd converted input: verify --against the checkpoint" "$AIRLLM_VERIFY" -q --against "$BF16" "$S/qc"

# ---- the manifests follow the schema ----
if python3 -c 'import jsonschema; jsonschema.Draft202012Validator' 2>/dev/null; then
    for d in "$S/qa" "$S/qc" "$S/oddq"; do
        python3 -c '
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator(schema).validate(json.load(open(sys.argv[2])))' \
            "$SRC_DIR/formats/manifest.schema.json" "$d/manifest.json" 2>"$S/err" &&
            ok "schema: $(basename "$d") manifest validates" || bad "schema: $d: $(tail -c 300 "$S/err")"
    done
else
    echo "SKIP: jsonschema not installed"
fi

# ---- determinism ----
rm -rf "$S/j1" "$S/j2"
"$Q" -q -j 1 "$F32" "$S/j1"
"$Q" -q -j 2 "$F32" "$S/j2"
[ "$(tree_digest "$S/j1")" = "$(tree_digest "$S/j2")" ] && ok "--jobs 1 and 2: identical bytes" || bad "--jobs changes the output"
rm -rf "$S/j1b"
"$Q" -q -j 1 "$F32" "$S/j1b"
[ "$(tree_digest "$S/j1")" = "$(tree_digest "$S/j1b")" ] && ok "two runs: identical bytes" || bad "runs differ"

# ---- options, output ----
rm -rf "$S/o"
run 0 "--report" "$Q" -q --report "$F32" "$S/o"
grep -q "rel_fro" "$S/last.out" && grep -q "model.layers.4.mlp.down_proj.weight" "$S/last.out" &&
    ok "--report prints the table" || bad "--report table missing"
rm -rf "$S/o"
run 0 "--json" "$Q" --json -t int8 "$F32" "$S/o"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); q=j["quant"]; assert q["type"]=="int8" and 8 < q["bits_per_weight"] < 8.6 and q["tensors"]==35, q' "$S/last.out" &&
    ok "--json summary with bits per weight" || bad "--json summary: $(head -c 300 "$S/last.out")"
run 0 "rerun of a finished command is a no-op" "$Q" -q -t int8 "$F32" "$S/o"
run 1 "other options over a finished output" "$Q" -q -t nf4 "$F32" "$S/o"
expect_err "use --force" "names --force"
run 0 "--force replaces it" "$Q" -q -f -t nf4 "$F32" "$S/o"
rm -rf "$S/dry"
run 0 "--dry-run" "$Q" -n "$F32" "$S/dry"
[ ! -e "$S/dry" ] && ok "--dry-run writes nothing" || bad "--dry-run created OUT_DIR"
run 2 "unknown --type" "$Q" -t q3 "$F32" "$S/x"
run 2 "--block-size 48" "$Q" -b 48 "$F32" "$S/x"
run 2 "--block-size 8192" "$Q" -b 8192 "$F32" "$S/x"
run 2 "--include bad" "$Q" --include norm "$F32" "$S/x"
run 2 "--compress is airllm-split's" "$Q" -c zstd "$F32" "$S/x"
run 2 "--delete-original is refused" "$Q" --delete-original "$F32" "$S/x"

# ---- bad input: clear error, exit 1, no manifest ----
rm -rf "$S/x"
run 1 "already quantized input" "$Q" -q "$S/j1" "$S/x"
expect_err "already quantized" "says it is already quantized"
[ ! -e "$S/x/manifest.json" ] && ok "no manifest after a refusal" || bad "manifest written"
rm -rf "$S/bad" "$S/x"
cp -a "$S/split" "$S/bad"
python3 - "$S/bad/layer.00002.airc" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[-5000] ^= 0x40  # inside the data, not the header
open(p, "wb").write(b)
EOF
run 1 "converted input with a flipped data byte" "$Q" -q "$S/bad" "$S/x"
expect_err "layer.00002.airc: SHA-256 differs" "names the corrupted unit file"
[ ! -e "$S/x/manifest.json" ] && [ ! -e "$S/x/layer.00002.airc" ] && ok "corrupted unit: no output for it, no manifest" || bad "output left for a corrupted unit"
rm -rf "$S/bad" "$S/x"
cp -a "$S/split" "$S/bad"
truncate -s -4096 "$S/bad/layer.00001.airc"
run 1 "converted input with a truncated unit" "$Q" -q "$S/bad" "$S/x"
expect_err "layer.00001.airc" "names the truncated unit"
rm -rf "$S/bad" "$S/x"
cp -a "$S/split" "$S/bad"
sed -i 's/"complete":\ttrue/"complete":\tfalse/' "$S/bad/manifest.json"
run 1 "converted input not marked complete" "$Q" -q "$S/bad" "$S/x"
expect_err "complete" "says it is incomplete"
rm -rf "$S/bad" "$S/x"
cp -a "$S/odd" "$S/bad"
python3 - "$S/bad/model.safetensors" <<'EOF'
import struct, sys, json
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
off = 8 + n + h["model.layers.0.mlp.up_proj.weight"]["data_offsets"][0] + 4 * 77
b[off:off + 4] = struct.pack("<f", float("nan"))
open(p, "wb").write(b)
EOF
run 1 "a NaN weight" "$Q" -q "$S/bad" "$S/x"
expect_err "model.layers.0.mlp.up_proj.weight" "names the tensor with the NaN"
[ ! -e "$S/x/manifest.json" ] && ok "NaN: no manifest" || bad "NaN: manifest written"
rm -rf "$S/bad" "$S/x"
cp -a "$BF16" "$S/bad"
f=$(ls "$S/bad"/*.safetensors | head -1)
printf '\xff\xff\xff\xff' | dd of="$f" bs=1 seek=0 conv=notrunc 2>/dev/null
run 1 "checkpoint with a corrupted shard header" "$Q" -q "$S/bad" "$S/x"
expect_err "$(basename "$f")" "names the shard"

# ---- verify catches a code that breaks the bound ----
rm -rf "$S/v"
cp -a "$S/j1" "$S/v"
python3 - "$S/v" <<'EOF'
import hashlib, json, os, struct, sys
d = sys.argv[1]
m = json.load(open(os.path.join(d, "manifest.json")))
t = next(t for t in m["tensors"] if t["name"] == "model.layers.1.mlp.up_proj.weight")
u = next(u for u in m["units"] if u["name"] == t["unit"])
p = os.path.join(d, u["file"])
b = bytearray(open(p, "rb").read())
count = struct.unpack_from("<I", b, 12)[0]
hb = struct.unpack_from("<Q", b, 24)[0]
for i in range(count):
    e = 64 + 128 * i
    noff, nlen = struct.unpack_from("<QI", b, e)
    name = b[64 + 128 * count + noff:64 + 128 * count + noff + nlen].decode()
    if name == t["name"]:
        off, stored = struct.unpack_from("<QQ", b, e + 88)
        idx = i
# The tensor's check in the format 1.2 check block is XXH3(stored) xor a
# share of its entry: swap the old data hash for the new one (libxxhash
# through ctypes), so the file stays consistent and only --against can tell.
import ctypes
xxh = ctypes.CDLL("libxxhash.so.0")
xxh.XXH3_64bits.restype = ctypes.c_uint64
xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
h = lambda: xxh.XXH3_64bits(bytes(b[off:off + stored]), stored)
old = h()
b[off + 100] ^= 0x88  # two codes move far from their values
at = struct.unpack_from("<Q", b, 48)[0] + 8 + 8 * idx
struct.pack_into("<Q", b, at, struct.unpack_from("<Q", b, at)[0] ^ old ^ h())
open(p, "wb").write(b)
u["sha256"] = hashlib.sha256(b).hexdigest()
open(os.path.join(d, "manifest.json"), "w").write(json.dumps(m, indent="\t"))
EOF
run 0 "a moved code keeps the file consistent" "$AIRLLM_VERIFY" -q "$S/v"
run 1 "verify --against catches the wrong code" "$AIRLLM_VERIFY" -q --against "$F32" "$S/v"
expect_err "exceed the nf4 error bound" "names the bound"

# ---- parts in their own type: --include lm_head=int8,embed=fp4 ----
# (untied synthetic Llama: the head is a tensor of its own)
rm -rf "$S/psyn" "$S/pt" "$S/pk"
python3 "$SRC_DIR/scripts/make_synthetic.py" --family llama --dtype BF16 --shards 2 \
    --out "$S/psyn" >/dev/null
PT="-t nf4 -b 32 --include lm_head=int8,embed=fp4"
run 0 "typed parts: quantize" "$Q" -q --json $PT "$S/psyn" "$S/pt"
python3 - "$S/pt/manifest.json" "$S/last.out" <<'EOF' && ok "typed parts: head int8, embeddings fp4, layers nf4, in options and --json" || bad "typed parts: encodings"
import json, sys
m = json.load(open(sys.argv[1]))
enc = {t["name"]: t["encoding"] for t in m["tensors"]}
assert enc["lm_head.weight"] == "int8" and enc["model.embed_tokens.weight"] == "fp4", enc
assert enc["model.layers.1.mlp.down_proj.weight"] == "nf4"
assert enc["model.norm.weight"] == "raw"
assert m["tool"]["options"]["include"] == ["embed=fp4", "lm_head=int8"], m["tool"]["options"]
q = json.load(open(sys.argv[2]))["quant"]
assert q["type"] == "nf4" and q["lm_head_type"] == "int8" and q["embed_type"] == "fp4", q
EOF
run 0 "typed parts: verify --against" "$AIRLLM_VERIFY" -q --against "$S/psyn" "$S/pt"
run 0 "typed parts: statistics recomputed" $CHECK "$S/pt" "$S/psyn"
run 0 "typed parts: airllm-run runs it" "$AIRLLM_RUN" -q -n 4 --ids 1,2,3 "$S/pt"
run 0 "typed parts: rerun is a no-op" "$Q" -q $PT "$S/psyn" "$S/pt"
run 1 "typed parts: another head type over it" "$Q" -q -t nf4 -b 32 \
    --include lm_head=nf4,embed=fp4 "$S/psyn" "$S/pt"
expect_err "use --force" "names --force"
(AIRLLM_FAULT_STEP=3 "$Q" -q $PT "$S/psyn" "$S/pk" >/dev/null 2>&1 & wait $!) 2>/dev/null
[ $? -eq 137 ] && ok "typed parts: killed at step 3" || bad "typed parts: not killed at step 3"
run 1 "typed parts: resume with another head type is refused" "$Q" -q -t nf4 -b 32 \
    --include lm_head=nf4,embed=fp4 "$S/psyn" "$S/pk"
run 0 "typed parts: resume with the same types" "$Q" -q $PT "$S/psyn" "$S/pk"
[ "$(tree_digest "$S/pk")" = "$(tree_digest "$S/pt")" ] &&
    ok "typed parts: the resumed output equals the uninterrupted one" ||
    bad "typed parts: resumed output differs"
run 2 "--include lm_head=q2" "$Q" --include lm_head=q2 "$F32" "$S/x"
expect_err "unknown type 'q2' for lm_head" "names the type and the part"

# ---- kill at every durable step, then resume ----
kill_resume() {
    local label=$1 src=$2 args=$3 n=1 steps=0 good=0
    rm -rf "$S/ref"
    "$Q" -q $args "$src" "$S/ref"
    while :; do
        rm -rf "$S/k"
        (AIRLLM_FAULT_STEP=$n "$Q" -q $args "$src" "$S/k" >/dev/null 2>"$S/err" & wait $!) 2>/dev/null
        local rc=$?
        [ $rc -eq 0 ] && break
        if [ $rc -ne 137 ]; then
            bad "$label: step $n: exit $rc: $(head -c 300 "$S/err")"
            break
        fi
        steps=$n
        if [ -f "$S/k/manifest.json" ] || ! "$AIRLLM_VERIFY" -q "$S/k" >/dev/null 2>&1; then
            if "$Q" -q $args "$src" "$S/k" 2>"$S/err" &&
                "$AIRLLM_VERIFY" -q --against "$BF16" "$S/k" 2>>"$S/err" &&
                [ "$(tree_digest "$S/k")" = "$(tree_digest "$S/ref")" ]; then
                good=$((good + 1))
            else
                bad "$label: resume after step $n: $(head -c 300 "$S/err")"
            fi
        else
            bad "$label: step $n: an interrupted output verifies"
        fi
        n=$((n + 1))
        [ $n -gt 300 ] && break
    done
    [ $steps -ge 8 ] && [ $good -eq $steps ] &&
        ok "$label: killed at each of $steps steps, every resume verifies and equals an uninterrupted run" ||
        bad "$label: $good of $steps resumes good"
}
kill_resume "from checkpoint" "$BF16" "-t nf4 --double-quant"
kill_resume "from converted zstd" "$S/splitz" "-t int8"

finish
