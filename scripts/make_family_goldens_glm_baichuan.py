#!/usr/bin/env python3
"""Golden fixtures for ChatGLM2/3 and Baichuan 1/2 from each family's own
published modeling code (remote code, not part of transformers).

The modeling files are not committed. Get them from the model repositories
on the Hugging Face hub (or a mirror of them) and lay them out as:

  MODELING/chatglm/     configuration_chatglm.py, modeling_chatglm.py
                        (THUDM/chatglm3-6b)
  MODELING/baichuan13/  configuration_baichuan.py, modeling_baichuan.py,
                        generation_utils.py (baichuan-inc/Baichuan2-13B-Chat)
  MODELING/baichuan7/   configuration_baichuan.py, modeling_baichuan.py
                        (baichuan-inc/Baichuan-7B)

Setup: a venv with torch, transformers 4.44, safetensors, numpy, accelerate
(Baichuan2 imports it), sentencepiece, einops:

    python3 -m venv /tmp/famvenv
    /tmp/famvenv/bin/pip install torch transformers==4.44.2 safetensors numpy accelerate

Regenerate (writes tests/data/arch/<case>/; BUILD holds airllm-split and
airllm-quant, used for the quantized references):

    /tmp/famvenv/bin/python scripts/make_family_goldens_glm_baichuan.py \\
        --modeling MODELING --build build [--case NAME ...]

Each case directory gets config.json, model.safetensors (float32, the real
tensor names, ChatGLM's rotary inv_freq buffer included as its checkpoints
have it) and golden.json in the format of scripts/make_arch_goldens.py
(prompt_ids, last_logits: float64 reference, last_logits_f32, greedy_ids),
which tests/run.sh runs resident, streamed and batched like every arch case.
golden_nf4.json and golden_int8.json are the same for the directory after
`airllm-quant -t nf4 --include lm_head` / `airllm-quant -t int8`: the
modeling code runs with every quantized tensor replaced by its dequantized
values, read back from the quantized unit files (tests/check_quant.py's
decoder), so the reference quantizes exactly the tensors the runner reads
(tests/run_glm_baichuan.sh checks them).

The remote code is imported as a package from a temporary copy of the
directory (Baichuan-7B's file imports its configuration module absolutely,
so the copy is also put on sys.path). No other change is made to it, with
one exception: chatglm3-6b's file predates rope_ratio (the key of
chatglm3-6b-32k/128k and GLM-4, whose code multiplies the RoPE base by it:
`base = base * self.rope_ratio` in RotaryEmbedding.forward_impl). For the
case with rope_ratio != 1, RotaryEmbedding.forward is wrapped at run time to
pass base = 10000 * config.rope_ratio, which is that line.

References: the model in float64 (model.double()); last_logits at the last
prompt position; greedy_ids: 8 steps of argmax with the model's own KV cache
(ChatGLM: position_ids passed as its generate() does), checked equal to an
uncached loop of full forwards and to the float32 model's.
"""
import argparse
import importlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import check_quant  # noqa: E402  (the dequantizer of the container format)

PROMPT_LEN = 20
NEW_TOKENS = 8
MARGIN_MIN = 1e-3

CHATGLM_BASE = dict(
    model_type="chatglm", architectures=["ChatGLMModel"], add_bias_linear=False, add_qkv_bias=True,
    apply_query_key_layer_scaling=True, apply_residual_connection_post_layernorm=False,
    attention_dropout=0.0, attention_softmax_in_fp32=True, bias_dropout_fusion=True,
    fp32_residual_connection=False, hidden_dropout=0.0, layernorm_epsilon=1e-5,
    multi_query_attention=True, original_rope=True, post_layer_norm=True, rmsnorm=True,
    use_cache=True, torch_dtype="float32", tie_word_embeddings=False, eos_token_id=2, pad_token_id=0)

CASES = [
    dict(name="chatglm_groups", family="chatglm", seed=1200,
         config=dict(CHATGLM_BASE, hidden_size=64, ffn_hidden_size=128, kv_channels=16,
                     num_attention_heads=6, multi_query_group_num=2, num_layers=3,
                     padded_vocab_size=320, seq_length=64),
         notes="ChatGLM2/3 (chatglm3-6b modeling_chatglm.py): 6 query heads in 2 groups "
               "(heads x kv_channels = 96, not hidden_size 64), fused query_key_value with "
               "bias, RoPE on the first 8 of 16 dims per head in adjacent pairs, fused "
               "dense_h_to_4h (SwiGLU halves), untied output_layer"),
    dict(name="chatglm_rope_ratio", family="chatglm", seed=1300,
         config=dict(CHATGLM_BASE, hidden_size=64, ffn_hidden_size=128, kv_channels=16,
                     num_attention_heads=4, multi_query_group_num=2, num_layers=2,
                     padded_vocab_size=300, seq_length=64, rope_ratio=0.02),
         notes="ChatGLM with rope_ratio 0.02 (base 200): the 32k/128k variants' key, applied "
               "as their code does (base * rope_ratio); a small base so that it matters "
               "within 28 positions"),
    dict(name="baichuan_alibi", family="baichuan13", seed=1400,
         config=dict(model_type="baichuan", architectures=["BaichuanForCausalLM"],
                     hidden_size=96, intermediate_size=128, num_attention_heads=6,
                     num_hidden_layers=2, vocab_size=300, model_max_length=64,
                     rms_norm_eps=1e-6, hidden_act="silu", bos_token_id=1, eos_token_id=2,
                     pad_token_id=0, tie_word_embeddings=False, torch_dtype="float32",
                     airllm_norm_head=True),
         head_norms=True,
         notes="Baichuan2-13B modeling_baichuan.py: ALiBi with 6 heads (4 + 2: the rule for "
               "head counts that are not powers of two), fused W_pack, NormHead over lm_head "
               "rows of unequal norms (0.05 .. 2.5); no max_position_embeddings, so ALiBi by "
               "the config rule; airllm_norm_head: the vocabulary is too small for the "
               "vocab_size rule"),
    dict(name="baichuan_rope", family="baichuan7", seed=1500,
         config=dict(model_type="baichuan", architectures=["BaiChuanForCausalLM"],
                     hidden_size=64, intermediate_size=128, num_attention_heads=4,
                     num_hidden_layers=2, vocab_size=300, max_position_embeddings=64,
                     model_max_length=64, rms_norm_eps=1e-6, hidden_act="silu",
                     bos_token_id=1, eos_token_id=2, pad_token_id=0,
                     tie_word_embeddings=False, torch_dtype="float32",
                     airllm_norm_head=False),
         notes="Baichuan-7B modeling_baichuan.py: rotate-half RoPE base 10000, fused "
               "W_pack, plain lm_head (airllm_norm_head false: Baichuan 1); "
               "max_position_embeddings present, so RoPE by the config rule"),
]

MODULES = {
    "chatglm": ("modeling_chatglm", "configuration_chatglm", "ChatGLMConfig",
                "ChatGLMForConditionalGeneration"),
    "baichuan13": ("modeling_baichuan", "configuration_baichuan", "BaichuanConfig",
                   "BaichuanForCausalLM"),
    "baichuan7": ("modeling_baichuan", "configuration_baichuan", "BaiChuanConfig",
                  "BaiChuanForCausalLM"),
}

_loaded = {}


def load_family(modeling, family):
    """The remote code of a family, imported as a package from a copy."""
    if family in _loaded:
        return _loaded[family]
    src = os.path.join(modeling, family)
    tmp = tempfile.mkdtemp(prefix="famB_")
    pkg = "remote_" + family
    dst = os.path.join(tmp, pkg)
    shutil.copytree(src, dst)
    open(os.path.join(dst, "__init__.py"), "w").close()
    sys.path.insert(0, tmp)
    sys.path.insert(0, dst)  # Baichuan-7B: "from configuration_baichuan import ..."
    mod_name, cfg_name, cfg_cls, model_cls = MODULES[family]
    mod = importlib.import_module(pkg + "." + mod_name)
    cfgmod = sys.modules.get("configuration_baichuan") if family == "baichuan7" else \
        importlib.import_module(pkg + "." + cfg_name)
    _loaded[family] = (mod, getattr(cfgmod, cfg_cls), getattr(mod, model_cls))
    return _loaded[family]


def patch_rope_ratio(mod, ratio):
    """chatglm3-6b's RotaryEmbedding with the 32k/128k code's base * rope_ratio."""
    cls = mod.RotaryEmbedding
    if not hasattr(cls, "_famB_orig"):
        cls._famB_orig = cls.forward
    if ratio == 1:
        cls.forward = cls._famB_orig
        return

    def forward(self, max_seq_len, offset=0):
        return self.forward_impl(max_seq_len, self.dim, dtype=self.inv_freq.dtype,
                                 device=self.inv_freq.device, base=10000 * ratio)
    cls.forward = forward


def init_weights(model, gen, case):
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if p.dim() == 1 and "norm" in name:
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)
        if case.get("head_norms"):
            # rows of very different norms, so that NormHead changes the ranking
            w = model.lm_head.weight
            scale = torch.exp(torch.linspace(math.log(0.05), math.log(2.5), w.shape[0]))
            perm = torch.randperm(w.shape[0], generator=gen)
            w.mul_(scale[perm][:, None] / w.norm(dim=1, keepdim=True))


def build_model(case, modeling):
    mod, cfg_cls, model_cls = load_family(modeling, case["family"])
    if case["family"] == "chatglm":
        patch_rope_ratio(mod, case["config"].get("rope_ratio", 1))
    cfg = cfg_cls(**case["config"])
    torch.manual_seed(case["seed"])
    if case["family"] == "chatglm":
        model = model_cls(cfg, empty_init=False)
    else:
        model = model_cls(cfg)
    return model.float().eval(), cfg


def forward_logits(model, case, ids, past=None, pos0=0):
    t = torch.tensor([ids])
    kw = dict(use_cache=True, past_key_values=past)
    if case["family"] == "chatglm":
        kw["position_ids"] = torch.arange(pos0, pos0 + len(ids))[None]
    out = model(t, **kw)
    return out.logits[0, -1], out.past_key_values


@torch.no_grad()
def greedy(model, case, prompt):
    logits, past = forward_logits(model, case, prompt)
    seq, margins = list(prompt), []
    for _ in range(NEW_TOKENS):
        top2 = torch.topk(logits.double(), 2).values
        margins.append(float(top2[0] - top2[1]))
        nxt = int(logits.argmax())
        seq.append(nxt)
        logits, past = forward_logits(model, case, [nxt], past, len(seq) - 1)
    return seq[len(prompt):], margins


@torch.no_grad()
def greedy_uncached(model, case, prompt):
    seq = list(prompt)
    for _ in range(NEW_TOKENS):
        seq.append(int(forward_logits(model, case, seq)[0].argmax()))
    return seq[len(prompt):]


def fresh_copy(model, case, modeling, state, dtype):
    """A new instance (NormHead normalizes its weight in place at first use)."""
    m, _ = build_model(case, modeling)
    m.load_state_dict(state)
    return m.to(dtype).eval()


def reference(case, modeling, state, prompt):
    m64 = fresh_copy(None, case, modeling, state, torch.float64)
    with torch.no_grad():
        l64 = forward_logits(m64, case, prompt)[0]
    g64, margins = greedy(fresh_copy(None, case, modeling, state, torch.float64), case, prompt)
    g64_nc = greedy_uncached(fresh_copy(None, case, modeling, state, torch.float64), case, prompt)
    m32 = fresh_copy(None, case, modeling, state, torch.float32)
    with torch.no_grad():
        l32 = forward_logits(m32, case, prompt)[0]
    g32, _ = greedy(fresh_copy(None, case, modeling, state, torch.float32), case, prompt)
    return l64, l32, g64, g64_nc, g32, margins


class Reject(Exception):
    pass


def accept(g64, g64_nc, g32, margins, cfg):
    if len(set(g64)) < 3:
        raise Reject("greedy ids too uniform: %s" % g64)
    if {cfg.get("bos_token_id"), cfg.get("eos_token_id"), 0} & set(g64):
        raise Reject("greedy ids hit bos/eos/pad")
    if min(margins) <= MARGIN_MIN:
        raise Reject("greedy margin %.3g" % min(margins))
    if not (g64 == g64_nc == g32):
        raise Reject("greedy differs: %s %s %s" % (g64, g64_nc, g32))


def f32_repr(x):
    return float(repr(np.float32(x)).replace("np.float32(", "").rstrip(")"))


def write_golden(path, obj):
    lines = ["{"]
    items = list(obj.items())
    for i, (k, v) in enumerate(items):
        lines.append("  %s: %s%s" % (json.dumps(k), json.dumps(v, ensure_ascii=True),
                                     "," if i + 1 < len(items) else ""))
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def golden_obj(case, seed, prompt, l64, l32, g64, margins, extra):
    return {
        "case": case["name"], "model_type": case["config"]["model_type"], "config_style": "remote",
        "seed": seed, "prompt_ids": prompt, "greedy_ids": g64,
        "greedy_min_margin": min(margins), "last_logits_argmax": int(l64.argmax()),
        "f32_max_abs_diff": float((l32.double() - l64).abs().max()), **extra,
        "notes": case["notes"],
        "versions": {"transformers": __import__("transformers").__version__,
                     "torch": torch.__version__},
        "last_logits": [float(x) for x in l64.tolist()],
        "last_logits_f32": [f32_repr(x) for x in l32.tolist()],
    }


def dequantized_state(qdir, state):
    """state with every quantized tensor of qdir replaced by its values."""
    out = dict(state)
    man = json.load(open(os.path.join(qdir, "manifest.json")))
    n_q = 0
    for unit in man["units"]:
        if "file" not in unit:
            continue
        path = os.path.join(qdir, unit["file"])
        _, tensors = check_quant.read_header(path)
        blob = open(path, "rb").read()
        for t in tensors:
            if t["enc"] not in check_quant.ENC:
                continue
            vals = check_quant.dequantize(t, blob)
            out[t["name"]] = torch.tensor(vals, dtype=torch.float32).reshape(t["shape"])
            n_q += 1
    assert n_q, "nothing quantized in %s" % qdir
    return out, n_q


def run_case(case, modeling, build, out_root):
    for attempt in range(50):
        seed = case["seed"] + attempt
        try:
            return attempt_case(case, seed, modeling, build, out_root)
        except Reject as e:
            print("  %s seed %d rejected: %s" % (case["name"], seed, e), file=sys.stderr)
    raise SystemExit("%s: no acceptable seed" % case["name"])


def attempt_case(case, seed, modeling, build, out_root):
    case = dict(case, seed=seed)
    model, cfg = build_model(case, modeling)
    gen = torch.Generator().manual_seed(seed)
    init_weights(model, gen, case)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    prompt = torch.randint(3, case["config"].get("vocab_size", case["config"].get("padded_vocab_size")),
                           (PROMPT_LEN,), generator=gen).tolist()
    l64, l32, g64, g64_nc, g32, margins = reference(case, modeling, state, prompt)
    accept(g64, g64_nc, g32, margins, case["config"])
    out = os.path.join(out_root, case["name"])
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(json.dumps(case["config"], indent=2, sort_keys=True) + "\n")
    save_file(state, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    write_golden(os.path.join(out, "golden.json"),
                 golden_obj(case, seed, prompt, l64, l32, g64, margins, {}))
    summary = [(case["name"], seed, float((l32.double() - l64).abs().max()), g64, min(margins))]
    if build:
        with tempfile.TemporaryDirectory() as tmp:
            split = os.path.join(tmp, "split")
            subprocess.run([os.path.join(build, "airllm-split"), "-q", out, split], check=True)
            for enc, args in (("nf4", ["-t", "nf4", "--include", "lm_head"]), ("int8", ["-t", "int8"])):
                q = os.path.join(tmp, enc)
                subprocess.run([os.path.join(build, "airllm-quant"), "-q"] + args + [split, q], check=True)
                qstate, n_q = dequantized_state(q, state)
                ql64, ql32, qg64, qg64_nc, qg32, qm = reference(case, modeling, qstate, prompt)
                if not (qg64 == qg64_nc == qg32) or min(qm) <= MARGIN_MIN:
                    raise Reject("%s greedy unstable: %s %s %s margin %.3g" % (enc, qg64, qg64_nc, qg32, min(qm)))
                write_golden(os.path.join(out, "golden_%s.json" % enc),
                             golden_obj(case, seed, prompt, ql64, ql32, qg64, qm,
                                        {"quant_args": args, "quantized_tensors": n_q}))
                summary.append((case["name"] + "/" + enc, seed, float((ql32.double() - ql64).abs().max()),
                                qg64, min(qm)))
    return summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--modeling", required=True, help="directory with chatglm/, baichuan13/, baichuan7/")
    ap.add_argument("--build", help="build directory with airllm-split and airllm-quant "
                                    "(without it, no golden_nf4/int8.json)")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "tests", "data", "arch"))
    ap.add_argument("--case", action="append")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import transformers
    transformers.logging.set_verbosity_error()
    rows = []
    for case in CASES:
        if args.case and case["name"] not in args.case:
            continue
        rows += run_case(case, os.path.abspath(args.modeling), args.build, args.out)
    for r in rows:
        print("%-24s seed %d  max|f32-f64| %.3g  greedy %s  min margin %.3g" % r)


if __name__ == "__main__":
    main()
