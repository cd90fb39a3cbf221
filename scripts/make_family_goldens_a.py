#!/usr/bin/env python3
"""Golden fixtures for Qwen v1 (model_type qwen) and InternLM2 / 2.5
(internlm2), computed by each family's own published modeling code.

The modeling files are not in this repository. Put them in one directory
per family under MODELING (any copy of the Hub repositories' files works):

    MODELING/qwen/       configuration_qwen.py modeling_qwen.py qwen_generation_utils.py
                         cpp_kernels.py
                         (Qwen/Qwen-7B or Qwen-72B on the Hub, late 2023; the committed
                         goldens used Qwen-72B's, from the GitHub mirror ds-llo/qwcs)
    MODELING/internlm2/  configuration_internlm2.py modeling_internlm2.py
                         (internlm/internlm2-chat-7b on the Hub; the goldens used the
                         GitHub mirror NanSang2000/S1mpleAgent's copy)
    MODELING/internlm/   configuration_internlm.py modeling_internlm.py
                         (internlm/internlm-chat-7b on the Hub, or the same files in
                         github.com/InternLM/InternLM at 095ebff,
                         tools/transformers/internlm_model/)

Setup (a venv with torch; the remote code wants transformers 4.x):

    python3 -m venv /tmp/famvenv
    /tmp/famvenv/bin/pip install torch 'transformers==4.44.2' safetensors numpy einops \\
        tiktoken sentencepiece accelerate

Regenerate (writes tests/data/families/<case>/; needs airllm-split and
airllm-quant from BUILD for the quantized references):

    /tmp/famvenv/bin/python scripts/make_family_goldens_a.py --modeling MODELING \\
        --build build [--out tests/data/families] [--case NAME ...]

Each case directory gets config.json (with the family's auto_map, as on the
Hub), model.safetensors (float32, the names the modeling code's state_dict
has) and three goldens in the tests/data/arch golden.json format
(prompt_ids, last_logits, greedy_ids, ...), read by tests/run_golden.py:

  golden.json       the float32 weights;
  golden_nf4.json   the weights as `airllm-quant -t nf4` stores them,
  golden_int8.json  and as `-t int8`: the script runs airllm-split and
                    airllm-quant, decodes every quantized tensor of the
                    output itself (codebooks of docs/quantization.md, layout
                    of formats/container.md, as tests/check_quant.py does),
                    and runs the reference model on those weights. A runner
                    that computes with the quantized container must then
                    match it as closely as the float one.

How the reference runs: the model class from the modeling file
(trust_remote_code from a temporary directory holding the files and the
config), in float64 (model.double()); the few float32 spots of the code
(RoPE tables, logn table, RMSNorm's upcast) stay as they are, which costs
~1e-6 against the 1e-4 the tests allow. last_logits is the prefill call's
last position. greedy_ids follow generate()'s path: one prefill call, then
one call per token with the returned past_key_values (no attention_mask:
Qwen's SDPA path drops the causal mask when an attention_mask is passed, a
bug of that code; without one it applies the causal mask). That path is
what airllm-run matches; where it differs from recomputing the whole
sequence each step (Qwen's NTK alpha frozen at the prompt length,
InternLM2's dynamic base growing with the length while old keys keep their
rotation), golden.json says so in "notes" and "uncached_greedy_ids".

Weights: normal(0, 0.1), norms 1 + normal(0, 0.1), from a torch.Generator
seeded per case; a seed is rejected (the next one tried) unless the greedy
ids hold at least 3 distinct tokens and no eos, and every greedy step's
top-1/top-2 logit margin is above 1e-3, for all three weight sets.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import check_quant  # noqa: E402  (container header reader and codebooks)

NEW_TOKENS = 8
MARGIN_MIN = 1e-3

FILES = {
    "qwen": ["configuration_qwen.py", "modeling_qwen.py", "qwen_generation_utils.py",
             "cpp_kernels.py"],
    "internlm2": ["configuration_internlm2.py", "modeling_internlm2.py"],
    "internlm": ["configuration_internlm.py", "modeling_internlm.py"],
}
AUTO_MAP = {
    "qwen": {"AutoConfig": "configuration_qwen.QWenConfig",
             "AutoModelForCausalLM": "modeling_qwen.QWenLMHeadModel"},
    "internlm2": {"AutoConfig": "configuration_internlm2.InternLM2Config",
                  "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"},
    "internlm": {"AutoConfig": "configuration_internlm.InternLMConfig",
                 "AutoModelForCausalLM": "modeling_internlm.InternLMForCausalLM"},
}
ARCH = {"qwen": "QWenLMHeadModel", "internlm2": "InternLM2ForCausalLM",
        "internlm": "InternLMForCausalLM"}

INTERNLM2 = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, hidden_act="silu", rms_norm_eps=1e-5,
                 bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
                 attn_implementation="eager", torch_dtype="float32")
QWEN = dict(vocab_size=256, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=4, kv_channels=16, layer_norm_epsilon=1e-6,
            emb_dropout_prob=0.0, attn_dropout_prob=0.0, initializer_range=0.02,
            scale_attn_weights=True, bf16=False, fp16=False, fp32=False, no_bias=True,
            use_flash_attn=False, tie_word_embeddings=False, torch_dtype="float32",
            use_cache_quantization=False, use_cache_kernel=False, softmax_in_fp32=False)

INTERNLM = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, hidden_act="silu", rms_norm_eps=1e-6, bos_token_id=1,
                eos_token_id=2, pad_token_id=0, tie_word_embeddings=False, torch_dtype="float32")

CASES = [
    dict(case="internlm2_gqa", family="internlm2", prompt_len=20, seed=100,
         config=dict(INTERNLM2, num_key_value_heads=2, max_position_embeddings=512,
                     rope_theta=1000000, rope_scaling=None, bias=False),
         notes="fused wqkv grouped by KV head (2 groups of 2 query heads + k + v), GQA 4/2, "
               "rope_theta 1e6, no biases, untied output.weight"),
    dict(case="internlm2_dynamic", family="internlm2", prompt_len=20, seed=200,
         config=dict(INTERNLM2, num_key_value_heads=1, max_position_embeddings=16,
                     rope_theta=10000, rope_scaling={"type": "dynamic", "factor": 2.0},
                     bias=True),
         quirks={"rope_scaling": None},
         notes="rope_scaling dynamic factor 2 past max_position_embeddings 16 (prompt 20, "
               "the base grows every step), MQA 4/1, wqkv and wo biases"),
    dict(case="internlm2_linear", family="internlm2", prompt_len=20, seed=300,
         config=dict(INTERNLM2, num_key_value_heads=2, max_position_embeddings=16,
                     rope_theta=10000, rope_scaling={"type": "linear", "factor": 4.0},
                     bias=False),
         quirks={"rope_scaling": None},
         notes="rope_scaling linear factor 4 (positions divided by 4), GQA 4/2"),
    dict(case="internlm_dynamic", family="internlm", prompt_len=20, seed=500,
         config=dict(INTERNLM, max_position_embeddings=16, bias=True,
                     rotary={"base": 10000, "type": "dynamic"}),
         quirks={"rotary": {"base": 10000, "type": "origin"}},
         notes="InternLM v1 (2023 code, rotary {base, type}): dynamic RoPE past "
               "max_position_embeddings 16 (prompt 20); keys cached before RoPE and all "
               "re-rotated each step with the current base (generate's path, which airllm-run "
               "follows); q/k/v/o biases; the persistent rotary_emb.inv_freq buffers are "
               "in the checkpoint, as in the real ones"),
    dict(case="qwen_logn_ntk", family="qwen", prompt_len=20, seed=400,
         config=dict(QWEN, max_position_embeddings=64, seq_length=8, rotary_pct=0.5,
                     rotary_emb_base=10000, use_dynamic_ntk=True, use_logn_attn=True),
         quirks={"use_logn_attn": False, "use_dynamic_ntk": False, "rotary_pct": 1.0},
         notes="seq_length 8 < prompt 20: NTK alpha 7 (fixed by the prompt length), logn "
               "query scaling from position 8; rotary_pct 0.5 (8 of 16 dims rotate); fused "
               "c_attn with bias; MLP c_proj(w1 x * silu(w2 x)) of width 128"),
]


def shims():
    """Run-time shims for this transformers version (the modeling code
    itself is not edited): modeling_qwen.py imports
    transformers_stream_generator inside chat_stream() only, which
    transformers' import check still demands; an empty module satisfies
    the check and is never used."""
    import types
    sys.modules.setdefault("transformers_stream_generator",
                           types.ModuleType("transformers_stream_generator"))


def make_model(case, tmp, modeling):
    fam = case["family"]
    src = os.path.join(modeling, fam)
    for f in FILES[fam]:
        shutil.copy(os.path.join(src, f), tmp)
    cfg = dict(case["config"], model_type=fam, architectures=[ARCH[fam]], auto_map=AUTO_MAP[fam])
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    conf = transformers.AutoConfig.from_pretrained(tmp, trust_remote_code=True)
    model = transformers.AutoModelForCausalLM.from_config(conf, trust_remote_code=True,
                                                          torch_dtype=torch.float32)
    return cfg, model.eval()


def init_weights(model, seed):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, p in sorted(model.state_dict().items()):
        if name.endswith("inv_freq"):  # InternLM v1's persistent RoPE buffer
            sd[name] = p.clone().float()
            continue
        r = torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.1
        is_norm = p.dim() == 1 and ("norm" in name or ".ln_" in name)
        sd[name] = (r + 1 if is_norm else r).float()
    model.load_state_dict(sd, strict=True)
    return sd


@torch.no_grad()
def reference(model, sd, prompt):
    """Prefill logits, greedy ids along generate()'s cached path and their
    margins."""
    model.load_state_dict({k: v.double() for k, v in sd.items()}, strict=True)
    out = model(input_ids=torch.tensor([prompt]), use_cache=True)
    last = out.logits[0, -1].clone()
    logits, past, greedy, margins = last, out.past_key_values, [], []
    for i in range(NEW_TOKENS):
        top = torch.topk(logits, 2).values
        margins.append(float(top[0] - top[1]))
        greedy.append(int(torch.argmax(logits)))
        if i + 1 < NEW_TOKENS:
            out = model(input_ids=torch.tensor([[greedy[-1]]]), past_key_values=past,
                        use_cache=True)
            logits, past = out.logits[0, -1], out.past_key_values
    return last.numpy(), greedy, margins


@torch.no_grad()
def recompute(model, sd, prompt):
    """Greedy ids of a full forward per step, on a fresh model object."""
    model.load_state_dict({k: v.double() for k, v in sd.items()}, strict=True)
    seq = list(prompt)
    for _ in range(NEW_TOKENS):
        seq.append(int(torch.argmax(model(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1])))
    return seq[len(prompt):]


def fresh(case, modeling):
    """A new model object: the remote code keeps state between calls
    (Qwen's cached NTK alpha, InternLM2's dynamic inv_freq)."""
    tmp = tempfile.mkdtemp()
    try:
        return make_model(case, tmp, modeling)[1].double()
    finally:
        shutil.rmtree(tmp)


@torch.no_grad()
def quirk_effects(case, modeling, sd, prompt, last):
    """How much the prefill logits move when one quirk is switched off: a
    runner that ignored it would miss the golden by about that much."""
    out = {}
    for key, val in case.get("quirks", {}).items():
        c = dict(case, config=dict(case["config"], **{key: val}))
        tmp = tempfile.mkdtemp()
        try:
            m = make_model(c, tmp, modeling)[1].double()
        finally:
            shutil.rmtree(tmp)
        keep = m.state_dict().keys()  # InternLM "origin" has no persistent inv_freq
        m.load_state_dict({k: v.double() for k, v in sd.items() if k in keep}, strict=True)
        lv = m(input_ids=torch.tensor([prompt]), use_cache=False).logits[0, -1].numpy()
        out["%s=%s" % (key, json.dumps(val))] = float(np.abs(lv - last).max())
    return out


def dequantized(qdir):
    """Every tensor of an airllm-quant output directory as float32, the
    quantized ones decoded as the runner's kernels decode them."""
    man = json.load(open(os.path.join(qdir, "manifest.json")))
    out = {}
    for unit in man["units"]:
        if "file" not in unit:
            continue
        path = os.path.join(qdir, unit["file"])
        _, tensors = check_quant.read_header(path)
        blob = open(path, "rb").read()
        for t in tensors:
            data = blob[t["offset"]:t["offset"] + t["stored"]]
            shape = tuple(t["shape"])
            if t["enc"] in check_quant.ENC:
                kind = check_quant.ENC[t["enc"]]
                block, flags = t["params"][0], t["params"][1]
                assert not flags & 1, "double quantization is not decoded here"
                n = int(np.prod(shape))
                nb = (n + block - 1) // block
                codes_len = n if kind == "int8" else (n + 1) // 2
                absmax = np.frombuffer(data, "<f4", nb, check_quant.align(codes_len, 64))
                a = np.repeat(absmax, block)[:n]
                if kind == "int8":
                    q = np.frombuffer(data, np.int8, n).astype(np.float32)
                    scale = (a.astype(np.float64) / 127.0).astype(np.float32)
                    v = (q * scale).astype(np.float32)
                else:
                    b = np.frombuffer(data, np.uint8, codes_len)
                    codes = np.empty(2 * codes_len, np.uint8)
                    codes[0::2], codes[1::2] = b >> 4, b & 15
                    book = np.array(check_quant.NF4 if kind == "nf4" else check_quant.FP4, np.float32)
                    v = (book[codes[:n]] * a).astype(np.float32)
                out[t["name"]] = torch.from_numpy(v.reshape(shape).copy())
            else:
                assert t["enc"] == 0 and t["dtype"] == 11, (t["name"], t["enc"], t["dtype"])
                out[t["name"]] = torch.from_numpy(np.frombuffer(data, "<f4").reshape(shape).copy())
    return out


def attempt(case, seed, modeling, build, outdir):
    fam = case["family"]
    tmp = tempfile.mkdtemp()
    try:
        cfg, model = make_model(case, tmp, modeling)
        sd = init_weights(model, seed)
        g = torch.Generator().manual_seed(seed + 1)
        prompt = [int(x) for x in torch.randint(3, cfg["vocab_size"], (case["prompt_len"],), generator=g)]
        variants = {"": sd}
        ckpt = os.path.join(tmp, "ckpt")
        os.mkdir(ckpt)
        save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(ckpt, "model.safetensors"),
                  metadata={"format": "pt"})
        for f in FILES[fam]:
            shutil.copy(os.path.join(tmp, f), ckpt)
        with open(os.path.join(ckpt, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        split = os.path.join(tmp, "split")
        subprocess.run([os.path.join(build, "airllm-split"), "-q", ckpt, split], check=True)
        for ty in ("nf4", "int8"):
            q = os.path.join(tmp, ty)
            subprocess.run([os.path.join(build, "airllm-quant"), "-q", "-t", ty, split, q], check=True)
            dq = dequantized(q)
            assert set(dq) == set(sd), set(dq) ^ set(sd)
            variants["_" + ty] = dq
        results = {}
        for key, weights in variants.items():
            last, greedy, margins = reference(fresh(case, modeling), weights, prompt)
            uncached = recompute(fresh(case, modeling), weights, prompt)
            eos = cfg.get("eos_token_id")
            if len(set(greedy)) < 3 or eos in greedy or min(margins) <= MARGIN_MIN:
                print("  seed %d rejected (%s): greedy %s, min margin %.3g" %
                      (seed, key or "f32", greedy, min(margins)))
                return False
            results[key] = (last, greedy, margins, uncached)
        effects = quirk_effects(case, modeling, sd, prompt, results[""][0])
        if min(effects.values(), default=1) < 0.05:
            print("  seed %d rejected: a quirk moves the logits too little: %s" % (seed, effects))
            return False
        os.makedirs(outdir, exist_ok=True)
        for f in ("config.json", "model.safetensors"):
            shutil.copy(os.path.join(ckpt, f), os.path.join(outdir, f))
        for key, (last, greedy, margins, uncached) in results.items():
            g = dict(case=case["case"], family=fam, model_type=fam, seed=seed,
                     encoding=key[1:] or "float32", prompt_ids=prompt,
                     last_logits=[float(x) for x in last], greedy_ids=greedy,
                     uncached_greedy_ids=uncached, min_margin=min(margins),
                     quirk_effects_max_abs=effects,
                     reference="%s from the published modeling code, float64, torch %s, "
                               "transformers %s" % (ARCH[fam], torch.__version__,
                                                    transformers.__version__),
                     notes=case["notes"])
            with open(os.path.join(outdir, "golden%s.json" % key), "w") as f:
                json.dump(g, f, indent=1)
                f.write("\n")
            print("  %s%s: greedy %s%s, min margin %.3g" % (
                case["case"], key, greedy, "" if uncached == greedy else " (recompute: %s)" % uncached,
                min(margins)))
        print("  logits move without the quirk: %s" % effects)
        return True
    finally:
        shutil.rmtree(tmp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--modeling", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "tests", "data", "families"))
    ap.add_argument("--case", action="append")
    a = ap.parse_args()
    torch.set_num_threads(1)
    shims()
    for case in CASES:
        if a.case and case["case"] not in a.case:
            continue
        print(case["case"])
        for seed in range(case["seed"], case["seed"] + 50):
            if attempt(case, seed, a.modeling, os.path.abspath(a.build),
                       os.path.join(a.out, case["case"])):
                break
        else:
            sys.exit("%s: no seed passed" % case["case"])


if __name__ == "__main__":
    main()
