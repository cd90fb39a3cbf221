#!/usr/bin/env bash
# Checks manifest.json against formats/manifest.schema.json.
#
#   tests/schema.sh SCRATCH_DIR
#   env: AIRLLM_SPLIT, SHARED_DIR, SRC_DIR (as for the other script tests;
#        AIRLLM_VERIFY defaults to the airllm-verify beside AIRLLM_SPLIT)
#
# Splits the shared models and a few synthetic checkpoints, raw and with
# --compress zstd, and validates every manifest.json with the Python
# `jsonschema` package (draft 2020-12), then checks the cross-field rules the
# schema cannot express (formats/manifest.md). Also checks that the schema is
# itself a valid draft 2020-12 schema with a description on every property,
# that deliberately broken manifests are rejected and that allowed variations
# are accepted.
#
# Needs jsonschema >= 4 (Debian: apt-get install python3-jsonschema, for
# /usr/bin/python3). Without it the test fails, unless AIRLLM_ALLOW_SKIP=1,
# in which case it prints "SKIP: ..." and exits 0.
: "${AIRLLM_SPLIT:?set AIRLLM_SPLIT to the airllm-split binary}"
: "${AIRLLM_VERIFY:=$(dirname "$AIRLLM_SPLIT")/airllm-verify}"
export AIRLLM_VERIFY
. "$(dirname "$0")/testlib.sh"

SCHEMA=$SRC_DIR/formats/manifest.schema.json
GEN=$SRC_DIR/scripts/make_synthetic.py

# ---- a Python with jsonschema's draft 2020-12 validator ----
PY=
for p in /usr/bin/python3 python3; do
    if "$p" -c 'import jsonschema; jsonschema.Draft202012Validator' >/dev/null 2>&1; then
        PY=$p
        break
    fi
done
if [ -z "$PY" ]; then
    echo "SKIP: jsonschema not installed (need the Python package jsonschema >= 4 with" \
         "Draft202012Validator; Debian: apt-get install python3-jsonschema)"
    if [ "${AIRLLM_ALLOW_SKIP:-0}" = 1 ]; then
        echo "0 passed, 0 failed (skipped: AIRLLM_ALLOW_SKIP=1)"
        exit 0
    fi
    bad "jsonschema is required (set AIRLLM_ALLOW_SKIP=1 to skip this test)"
    finish
    exit
fi
echo "using $PY, jsonschema $("$PY" -c 'import importlib.metadata as m; print(m.version("jsonschema"))' 2>/dev/null)"

CHECK=$SCRATCH/check_manifest.py
cat >"$CHECK" <<'EOF'
"""Helper for tests/schema.sh.

  schema-self SCHEMA           the schema is valid draft 2020-12 and every
                               property has a description
  validate SCHEMA MANIFEST     exit 0 valid, 1 invalid (first error printed)
  crossfield MANIFEST          the rules the schema cannot express
  mutate MANIFEST OUTDIR       writes bad-*.json and good-*.json variants
Exit status 2 means the helper itself could not run (unreadable file...).
"""
import copy
import json
import math
import os
import sys

import jsonschema


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


APPLICATORS = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else", "contains")


def schema_self(path):
    schema = load(path)
    jsonschema.Draft202012Validator.check_schema(schema)
    missing = []

    def walk(node, where):
        if isinstance(node, dict):
            for key, sub in node.get("properties", {}).items():
                if not (isinstance(sub, dict) and sub.get("description")):
                    missing.append(where + "/properties/" + key)
            for key, sub in node.items():
                # Applicators only restate properties defined elsewhere.
                if key not in APPLICATORS:
                    walk(sub, where + "/" + key)
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, where + "/" + str(i))

    walk(schema, "#")
    if missing:
        print("properties without a description: " + ", ".join(missing))
        return 1
    if schema.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
        print("$schema is not draft 2020-12")
        return 1
    return 0


def validate(schema_path, manifest_path):
    validator = jsonschema.Draft202012Validator(load(schema_path))
    err = jsonschema.exceptions.best_match(validator.iter_errors(load(manifest_path)))
    if err is None:
        return 0
    where = "/".join(str(p) for p in err.absolute_path) or "(root)"
    print("%s: invalid at %s: %s" % (manifest_path, where, err.message[:300]))
    return 1


DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "U16": 16, "I16": 16, "U32": 32, "I32": 32,
    "U64": 64, "I64": 64, "F16": 16, "BF16": 16, "F32": 32, "F64": 64,
    "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "C64": 64, "F4": 4,
    "F6_E2M3": 6, "F6_E3M2": 6,
}


def crossfield(path):
    m = load(path)
    problems = []
    units = m["units"]
    names = [u["name"] for u in units]
    if len(set(names)) != len(names):
        problems.append("unit names are not unique")
    unit_files = [u["file"] for u in units if "file" in u]
    if len(set(unit_files)) != len(unit_files):
        problems.append("unit files are not unique")
    for key in ("sources", "files"):
        fl = [f["file"] for f in m[key]]
        if len(set(fl)) != len(fl):
            problems.append(key + ": file names are not unique")
    if set(unit_files) & {f["file"] for f in m["files"]}:
        problems.append("a name in files is also a unit file")
    # execution order: embed?, layer 0..N-1, norm?, lm_head
    kinds = [u["kind"] for u in units]
    order = {"embed": 0, "layer": 1, "norm": 2, "lm_head": 3}
    if [order[k] for k in kinds] != sorted(order[k] for k in kinds) or kinds[-1:] != ["lm_head"]:
        problems.append("units are not in execution order: %s" % kinds)
    layers = [u["layer"] for u in units if u["kind"] == "layer"]
    if layers != list(range(len(layers))):
        problems.append("layer units are not 0..N-1 in order")
    if m["model"]["num_layers"] != len(layers):
        problems.append("model.num_layers %s != %d layer units"
                        % (m["model"]["num_layers"], len(layers)))
    with_file = {u["name"] for u in units if "file" in u}
    sources = {s["file"] for s in m["sources"]}
    tnames = [t["name"] for t in m["tensors"]]
    if len(set(tnames)) != len(tnames):
        problems.append("tensor names are not unique")
    unit_pos = {n: i for i, n in enumerate(names)}
    last = -1
    per_unit = {}
    for t in m["tensors"]:
        tag = "tensor %s" % t["name"]
        if t["unit"] not in with_file:
            problems.append(tag + ": unit %r is not a unit with a file" % t["unit"])
            continue
        if unit_pos[t["unit"]] < last:
            problems.append(tag + ": tensors are not listed unit by unit in unit order")
        last = unit_pos[t["unit"]]
        per_unit[t["unit"]] = per_unit.get(t["unit"], 0) + 1
        if t["source"] not in sources:
            problems.append(tag + ": source %r is not in sources" % t["source"])
        bits = math.prod(t["shape"]) * DTYPE_BITS[t["dtype"]]
        if bits % 8 or bits // 8 != t["bytes"]:
            problems.append(tag + ": bytes %d != product(shape) x dtype size" % t["bytes"])
        if t["encoding"] == "raw" and t["stored_bytes"] != t["bytes"]:
            problems.append(tag + ": raw but stored_bytes != bytes")
        if t["encoding"] == "zstd" and (t["stored_bytes"] == 0) != (t["bytes"] == 0):
            problems.append(tag + ": zstd: stored_bytes is 0 but bytes is not, or the reverse")
    for u in units:
        if "tied_to" in u:
            if u["tied_to"] not in tnames:
                problems.append("tied_to %r is not a listed tensor" % u["tied_to"])
            if not m["model"]["tie_word_embeddings"]:
                problems.append("lm_head is tied but model.tie_word_embeddings is false")
    if m["complete"] is not True:
        problems.append("complete is not true")
    for p in problems:
        print("%s: %s" % (path, p))
    return 1 if problems else 0


def mutate(path, outdir):
    base = load(path)
    assert base["units"][-1]["kind"] == "lm_head" and base["units"][1]["kind"] == "layer"

    def unit(m, kind):
        return next(u for u in m["units"] if u["kind"] == kind)

    QUANT = {"block_size": 64, "double_quant": False, "rmse": 0.01,
             "max_abs_error": 0.05, "rel_frobenius_error": 0.09}
    bad = {
        "missing-key": lambda m: m.pop("tensors"),
        "missing-model-key": lambda m: m["model"].pop("family"),
        "missing-tensor-key": lambda m: m["tensors"][0].pop("stored_bytes"),
        "sha-upper": lambda m: m["units"][0].update(sha256=m["units"][0]["sha256"].upper()),
        "sha-short": lambda m: m["files"][0].update(sha256=m["files"][0]["sha256"][:63]),
        "sha-newline": lambda m: m["sources"][0].update(sha256=m["sources"][0]["sha256"][:63] + "\n"),
        "unknown-kind": lambda m: m["units"][0].update(kind="attention"),
        "extra-key": lambda m: m.update(comment="hello"),
        "extra-unit-key": lambda m: m["units"][0].update(offset=0),
        "extra-tensor-key": lambda m: m["tensors"][0].update(offset=0),
        "extra-file-key": lambda m: m["files"][0].update(mode=420),
        "wrong-format": lambda m: m.update(format="gguf"),
        "major-2": lambda m: m.update(format_version="2.0"),
        "version-not-dotted": lambda m: m.update(format_version="1"),
        "complete-string": lambda m: m.update(complete="true"),
        "options-not-object": lambda m: m["tool"].update(options="--compress zstd"),
        "layer-missing": lambda m: m["units"][1].pop("layer"),
        "layer-on-lm-head": lambda m: m["units"][-1].update(layer=0),
        "layer-negative": lambda m: m["units"][1].update(layer=-1),
        "tied-to-on-layer": lambda m: m["units"][1].update(tied_to="x"),
        "no-file-no-tied": lambda m: [m["units"][0].pop(k) for k in ("file", "size", "sha256")],
        "two-lm-heads": lambda m: m["units"].append(dict(name="lm_head2", kind="lm_head",
                                                         tied_to="x")),
        "no-lm-head": lambda m: m["units"].pop(),
        "file-with-slash": lambda m: m["units"][0].update(file="../embed.airc"),
        "file-dotdot": lambda m: m["files"][0].update(file=".."),
        "file-control-char": lambda m: m["files"][0].update(file="config\n.json"),
        "file-is-manifest": lambda m: m["files"][0].update(file="manifest.json"),
        "unit-size-unaligned": lambda m: m["units"][0].update(size=m["units"][0]["size"] + 1),
        "size-negative": lambda m: m["files"][0].update(size=-1),
        "size-fraction": lambda m: m["files"][0].update(size=1.5),
        "size-over-2^53": lambda m: m["files"][0].update(size=2 ** 53 + 2),
        "unknown-dtype": lambda m: m["tensors"][0].update(dtype="bf16"),
        "unknown-encoding": lambda m: m["tensors"][0].update(encoding="gzip"),
        "shape-9-dims": lambda m: m["tensors"][0].update(shape=[1] * 9),
        "shape-negative": lambda m: m["tensors"][0].update(shape=[-1]),
        "shape-string": lambda m: m["tensors"][0].update(shape="[64]"),
        "num-layers-null": lambda m: m["model"].update(num_layers=None),
        "tie-not-bool": lambda m: m["model"].update(tie_word_embeddings=1),
        "tensor-name-empty": lambda m: m["tensors"][0].update(name=""),
        "nf4-without-quant": lambda m: m["tensors"][0].update(encoding="nf4"),
        "quant-on-raw": lambda m: m["tensors"][0].update(quant=QUANT),
        "quant-block-48": lambda m: m["tensors"][0].update(encoding="int8",
                                                          quant=dict(QUANT, block_size=48)),
        "quant-negative-rmse": lambda m: m["tensors"][0].update(encoding="fp4",
                                                               quant=dict(QUANT, rmse=-1)),
        "quant-extra-key": lambda m: m["tensors"][0].update(encoding="nf4",
                                                           quant=dict(QUANT, bits=4)),
        "quant-no-double": lambda m: m["tensors"][0].update(
            encoding="nf4", quant={k: v for k, v in QUANT.items() if k != "double_quant"}),
    }
    good = {
        "vocab-null": lambda m: m["model"].update(vocab_size=None, hidden_size=None),
        "minor-7": lambda m: m.update(format_version="1.7"),
        "tool-options-any": lambda m: m["tool"]["options"].update(future={"x": [1, 2]}),
        "encoding-nf4": lambda m: m["tensors"][0].update(encoding="nf4", quant=QUANT),
        "scalar-shape": lambda m: m["tensors"][0].update(shape=[]),
        "no-tensors": lambda m: m.update(tensors=[]),
        "no-files": lambda m: m.update(files=[]),
    }
    os.makedirs(outdir, exist_ok=True)
    for prefix, table in (("bad", bad), ("good", good)):
        for name, change in table.items():
            m = copy.deepcopy(base)
            change(m)
            with open(os.path.join(outdir, "%s-%s.json" % (prefix, name)), "w",
                      encoding="utf-8") as f:
                json.dump(m, f, indent=1)
    return 0


def main(argv):
    try:
        if argv[1:2] == ["schema-self"] and len(argv) == 3:
            return schema_self(argv[2])
        if argv[1:2] == ["validate"] and len(argv) == 4:
            return validate(argv[2], argv[3])
        if argv[1:2] == ["crossfield"] and len(argv) == 3:
            return crossfield(argv[2])
        if argv[1:2] == ["mutate"] and len(argv) == 4:
            return mutate(argv[2], argv[3])
    except jsonschema.exceptions.SchemaError as e:
        print("the schema is not valid draft 2020-12: %s" % e.message)
        return 1
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:
        print("check_manifest.py: %s: %r" % (argv[1:2], e), file=sys.stderr)
        return 2
    print(__doc__, file=sys.stderr)
    return 2


sys.exit(main(sys.argv))
EOF

# run_py WANT DESC ARGS...: like run, and shows the helper's message on failure
run_py() {
    local want=$1 desc=$2
    shift 2
    "$PY" "$CHECK" "$@" >"$SCRATCH/last.out" 2>"$SCRATCH/last.err"
    LAST_RC=$?
    if [ "$LAST_RC" -eq "$want" ]; then
        ok "$desc"
    else
        bad "$desc: exit $LAST_RC, expected $want: $(head -c 600 "$SCRATCH/last.out")$(head -c 600 "$SCRATCH/last.err")"
    fi
}

run_py 0 "schema is valid draft 2020-12, every property described" schema-self "$SCHEMA"

# split_and_check NAME HF_DIR [SPLIT OPTIONS...]
VALID=()
split_and_check() {
    local name=$1 hf=$2
    shift 2
    local out=$SCRATCH/out-$name
    run 0 "split $name" "$AIRLLM_SPLIT" "$@" "$hf" "$out"
    [ "$LAST_RC" -eq 0 ] || return
    run_py 0 "$name: manifest.json matches the schema" validate "$SCHEMA" "$out/manifest.json"
    run_py 0 "$name: manifest.json keeps the cross-field rules" crossfield "$out/manifest.json"
    VALID+=("$out/manifest.json")
}

split_and_check stories260K "$MODELS/stories260K"
split_and_check stories260K-zstd "$MODELS/stories260K" --compress zstd
split_and_check stories260K-bf16-sharded "$MODELS/stories260K-bf16-sharded"
split_and_check stories260K-bf16-sharded-zstd "$MODELS/stories260K-bf16-sharded" --compress zstd

families=$(python3 "$GEN" --list 2>/dev/null)
for fam in chatglm qwen mixtral llama-tied; do
    if ! grep -qx -- "$fam" <<<"$families"; then
        echo "note: make_synthetic.py has no family $fam; not tested"
        continue
    fi
    hf=$SCRATCH/hf-$fam
    run 0 "make_synthetic $fam" python3 "$GEN" --family "$fam" --out "$hf"
    [ "$LAST_RC" -eq 0 ] || continue
    split_and_check "$fam" "$hf"
    split_and_check "$fam-zstd" "$hf" --compress zstd
done
# A sharded synthetic checkpoint in another dtype (sources include the index).
if grep -qx qwen2 <<<"$families"; then
    hf=$SCRATCH/hf-qwen2-f16-sharded
    run 0 "make_synthetic qwen2 F16 in 3 shards" \
        python3 "$GEN" --family qwen2 --dtype F16 --shards 3 --out "$hf"
    [ "$LAST_RC" -eq 0 ] && split_and_check qwen2-f16-sharded "$hf"
fi

# The sharded conversion lists the index among its sources.
m=$SCRATCH/out-stories260K-bf16-sharded/manifest.json
if [ -f "$m" ] && grep -q '"file":[[:space:]]*"model.safetensors.index.json"' "$m"; then
    ok "sharded: sources include model.safetensors.index.json"
else
    bad "sharded: sources lack model.safetensors.index.json"
fi

# ---- broken manifests must be rejected, allowed variations accepted ----
if [ "${#VALID[@]}" -eq 0 ]; then
    bad "no valid manifest to derive the broken ones from"
else
    # The sharded BF16 model: tied lm_head, layers, norm, index in sources.
    base=$SCRATCH/out-stories260K-bf16-sharded/manifest.json
    [ -f "$base" ] || base=${VALID[0]}
    run_py 0 "write the mutated manifests" mutate "$base" "$SCRATCH/mutated"
    n_bad=0
    for f in "$SCRATCH"/mutated/bad-*.json; do
        [ -f "$f" ] || continue
        n_bad=$((n_bad + 1))
        k=$(basename "$f" .json)
        run_py 1 "schema rejects ${k#bad-}" validate "$SCHEMA" "$f"
    done
    for f in "$SCRATCH"/mutated/good-*.json; do
        [ -f "$f" ] || continue
        k=$(basename "$f" .json)
        run_py 0 "schema accepts ${k#good-}" validate "$SCHEMA" "$f"
    done
    if [ "$n_bad" -ge 4 ]; then ok "$n_bad broken manifests tried"; else bad "only $n_bad broken manifests"; fi
fi

finish
