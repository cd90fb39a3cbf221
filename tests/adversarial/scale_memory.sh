#!/usr/bin/env bash
# Many tiny tensors, memory: a safetensors header and manifest.json were read
# as cJSON trees, about 1 KiB and 1.9 KiB per tensor, so a million-tensor
# checkpoint took 783 MiB to plan and 1.85 GiB to verify or run (issue 18).
# They are now read by a scanner into tables (per tensor: ~100 bytes plus its
# name; docs/benchmarks.md "Many tiny tensors"). At 150k tensors the old code
# (c0f1e13) peaked at 121 MiB planning and 283 MiB reading the manifest, the
# new at 44 and 68 MiB: the limits sit between, with margin on both sides.
# Peak RSS is from /usr/bin/time; under ASan/UBSan (the sanitizer build) RSS
# says nothing about the code, so there only the exit codes are checked.
. "$(dirname "$0")/../testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
: "${AIRLLM_QUANT:?set AIRLLM_QUANT to the airllm-quant binary}"
S=$SCRATCH
N=150000
PLAN_MIB=80   # split/quant --dry-run of N tensors in two shards
READ_MIB=160  # verify/run reading a manifest of N tensors
[ -x /usr/bin/time ] || { echo "no /usr/bin/time (apt-get install time)"; exit 1; }
sanitized=0
grep -q __asan_init "$AIRLLM_SPLIT" && sanitized=1

# peak DESC LIMIT_MIB: the last command's peak RSS (from $S/rss) is under LIMIT
peak() {
    local kib
    kib=$(tail -n 1 "$S/rss")
    if [ $sanitized = 1 ]; then
        ok "$1 (peak $((kib / 1024)) MiB under a sanitizer: not judged)"
    elif [ "$kib" -lt $(($2 * 1024)) ]; then
        ok "$1 peaks at $((kib / 1024)) MiB (limit $2)"
    else
        bad "$1 peaks at $((kib / 1024)) MiB, over the limit of $2 MiB"
    fi
}
measure() { /usr/bin/time -o "$S/rss" -f %M "$@"; }

python3 "$SRC_DIR/scripts/make_many_tensors.py" --tensors $N --out "$S/many" >/dev/null ||
    bad "generator"
run 0 "split --dry-run plans ${N} tensors" measure "$AIRLLM_SPLIT" -n "$S/many" "$S/out"
grep -q "12499 layers, 149991 tensors" "$S/last.out" && ok "the plan counts every tensor" ||
    bad "the plan's counts: $(head -c 300 "$S/last.out")"
peak "split --dry-run" $PLAN_MIB
run 0 "quant --dry-run plans ${N} tensors" measure "$AIRLLM_QUANT" -n "$S/many" "$S/outq"
peak "quant --dry-run" $PLAN_MIB

# A manifest of N tensors in 12.5k layer units whose files are missing:
# verify and run read it whole before they find the first file missing.
python3 - "$S/conv" $N <<'PY'
import json, os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
L, sha = (n - 3) // 12, "0" * 64
units = [{"name": "embed", "kind": "embed", "file": "embed.airc", "size": 4096, "sha256": sha}]
units += [{"name": f"layer.{i}", "kind": "layer", "layer": i, "file": f"layer.{i:05d}.airc",
           "size": 4096, "sha256": sha} for i in range(L)]
units += [{"name": "norm", "kind": "norm", "file": "norm.airc", "size": 4096, "sha256": sha},
          {"name": "lm_head", "kind": "lm_head", "file": "lm_head.airc", "size": 4096,
           "sha256": sha}]
def t(name, unit):
    return {"name": name, "dtype": "F32", "shape": [8, 8], "bytes": 256, "unit": unit,
            "encoding": "raw", "stored_bytes": 256, "source": "model-00001-of-00002.safetensors"}
tensors = [t("model.embed_tokens.weight", "embed")]
tensors += [t(f"model.layers.{i}.self_attn.w{k}.weight", f"layer.{i}")
            for i in range(L) for k in range(12)]
tensors += [t("model.norm.weight", "norm"), t("lm_head.weight", "lm_head")]
m = {"format": "airllm", "format_version": "1.0", "complete": True,
     "tool": {"name": "airllm-split", "version": "0.1.0", "options": {}},
     "model": {"architecture": "Qwen2ForCausalLM", "model_type": "qwen2", "family": "qwen2",
               "num_layers": L, "hidden_size": 8, "vocab_size": 16,
               "tie_word_embeddings": False},
     "units": units, "tensors": tensors,
     "sources": [{"file": "model-00001-of-00002.safetensors", "size": 8, "sha256": sha}],
     "files": []}
with open(os.path.join(d, "manifest.json"), "w") as f:
    json.dump(m, f, indent="\t")
PY
cp "$S/many/config.json" "$S/conv/"
run 1 "verify --quick of a ${N}-tensor manifest finds the files missing" \
    measure "$AIRLLM_VERIFY" --quick "$S/conv"
expect_err "embed.airc" "verify names a missing unit file"
peak "verify reading the manifest" $READ_MIB
run 1 "run of a ${N}-tensor manifest finds the files missing" \
    measure "$AIRLLM_RUN" -q --ids 1 -n 1 "$S/conv"
expect_err "embed.airc" "run names the missing unit file"
peak "run reading the manifest" $READ_MIB
finish
