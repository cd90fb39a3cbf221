#!/usr/bin/env bash
# Many tensors: lookups by name were linear scans inside loops over tensors
# (index planning, the manifest's unit and source references, verify's
# per-unit checks), so a checkpoint or manifest of a few hundred thousand
# tensors took minutes. Sizes here take well over the timeout on the old
# code and a few seconds now; the timeouts only catch that (speed itself is
# measured by scripts/bench_tensors.sh).
. "$(dirname "$0")/../testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
S=$SCRATCH
T=60

# ---- planning a sharded checkpoint of 300k tensors ----
python3 "$SRC_DIR/scripts/make_many_tensors.py" --tensors 300000 --out "$S/many" >/dev/null ||
    bad "generator"
run 0 "split --dry-run plans 300k tensors" timeout $T "$AIRLLM_SPLIT" -n "$S/many" "$S/out"
grep -q "24999 layers, 299991 tensors" "$S/last.out" && ok "the plan counts every tensor" ||
    bad "the plan's counts: $(head -c 300 "$S/last.out")"

# ---- a manifest of 25k units and 300k tensors whose files are missing ----
# verify and run parse it whole before they find the files missing.
python3 - "$S/conv" <<'PY'
import json, os, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
L, sha = 24999, "0" * 64
units = [{"name": "embed", "kind": "embed", "file": "embed.airc", "size": 4096, "sha256": sha}]
units += [{"name": f"layer.{i}", "kind": "layer", "layer": i, "file": f"layer.{i:05d}.airc",
           "size": 4096, "sha256": sha} for i in range(L)]
units += [{"name": "norm", "kind": "norm", "file": "norm.airc", "size": 4096, "sha256": sha},
          {"name": "lm_head", "kind": "lm_head", "file": "lm_head.airc", "size": 4096,
           "sha256": sha}]
def t(name, unit):
    return {"name": name, "dtype": "F32", "shape": [2], "bytes": 8, "unit": unit,
            "encoding": "raw", "stored_bytes": 8, "source": "model.safetensors"}
tensors = [t("model.embed_tokens.weight", "embed")]
tensors += [t(f"model.layers.{i}.w{k}", f"layer.{i}") for i in range(L) for k in range(12)]
tensors += [t("model.norm.weight", "norm"), t("lm_head.weight", "lm_head")]
m = {"format": "airllm", "format_version": "1.0", "complete": True,
     "tool": {"name": "airllm-split", "version": "0.1.0", "options": {}},
     "model": {"architecture": "Qwen2ForCausalLM", "model_type": "qwen2", "family": "qwen2",
               "num_layers": L, "hidden_size": 8, "vocab_size": 16,
               "tie_word_embeddings": False},
     "units": units, "tensors": tensors,
     "sources": [{"file": "model.safetensors", "size": 8, "sha256": sha}], "files": []}
with open(os.path.join(d, "manifest.json"), "w") as f:
    json.dump(m, f, indent=1)
PY
cp "$S/many/config.json" "$S/conv/"
run 1 "verify --quick of a 300k-tensor manifest finds the files missing" \
    timeout $T "$AIRLLM_VERIFY" --quick "$S/conv"
expect_err "embed.airc" "verify names a missing unit file"
run 1 "run of a 300k-tensor manifest finds the files missing" \
    timeout $T "$AIRLLM_RUN" -q --ids 1 -n 1 "$S/conv"
expect_err "embed.airc" "run names the missing unit file"
finish
