#!/usr/bin/env python3
"""Golden fixtures from Hugging Face transformers for tiny random-weight
checkpoints of every architecture the CPU runner must support.

Setup (torch from PyPI is large; that is expected):

    python3 -m venv /tmp/goldvenv
    /tmp/goldvenv/bin/pip install torch transformers safetensors numpy

Regenerate (writes tests/data/arch/<case>/; tests/data/arch/README.md is
hand-written and left alone):

    /tmp/goldvenv/bin/python scripts/make_arch_goldens.py [--out tests/data/arch] [--case NAME ...]

For each case the directory gets:

  config.json            the model config (see "config styles" below)
  generation_config.json as save_pretrained writes it
  model.safetensors      float32, tensor names exactly as save_pretrained writes
                         them (tied embeddings: no lm_head.weight)
  golden.json            case, model_type, prompt_ids, last_logits (float64
                         reference), last_logits_f32, greedy_ids, notes, ...

The reference numbers are computed by transformers itself on the model
reloaded from the written directory, attn_implementation="eager":

  * last_logits: the model in float64 (model.double()).  transformers
    hard-codes float32 in a few places even for a float64 model (RMSNorm
    upcasts to float32 and back, the eager softmax runs in float32, the RoPE
    cos/sin table and inv_freq are float32, the Mixtral router softmax is
    float32).  While computing the float64 reference those few spots are
    patched (see F64Patches) to run in float64 instead, so the reference is the
    same math at float64 precision; the script checks that the unpatched
    model.double() agrees with it to < 1e-5 and gives the same greedy tokens,
    and golden.json records that difference (hf_f64_unpatched_max_abs_diff).
  * last_logits_f32: the same model in float32, unpatched (plain transformers).
  * greedy_ids: model.generate(do_sample=False, use_cache=True,
    max_new_tokens=8) in float64; checked equal to the float32 greedy and to
    an uncached argmax loop over full forwards.

Weights: normal(0, 0.1) for matrices and biases, 1 + normal(0, 0.1) for norm
weights (Mixtral router: normal(0, 0.5)), drawn from a torch.Generator seeded
per case.  A seed is rejected (and the next one tried) unless the greedy ids
contain at least 3 distinct tokens and no bos/eos id, the top-1/top-2 logit
margin at every greedy step exceeds 1e-3, and the case-specific checks pass.

Config styles: transformers 5 save_pretrained writes "rope_parameters"
(rope_theta inside it) and "layer_types"; checkpoints written by transformers
4.x (most of the Hub) have top-level "rope_theta" and "rope_scaling" instead.
Cases with config_style "legacy" get their config.json rewritten into the 4.x
shape; "v5" cases keep save_pretrained's output.  Either way the script
reloads the directory with from_pretrained and checks its float32 logits are
bit-identical to the in-memory model's, so transformers reads both configs
the same way.

Deterministic: fixed seeds, torch.set_num_threads(1), floats written as
Python's shortest round-trip repr (float32 values as numpy's shortest float32
repr).  Rerunning on the same machine gives identical files.
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          MixtralConfig, MixtralForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM)
from transformers.models.llama import modeling_llama
from transformers.models.mistral import modeling_mistral
from transformers.models.mixtral import modeling_mixtral
from transformers.models.qwen2 import modeling_qwen2
from transformers.models.qwen3 import modeling_qwen3

PROMPT_LEN = 20
NEW_TOKENS = 8
MARGIN_MIN = 1e-3
KEEP_FILES = ("config.json", "generation_config.json", "model.safetensors")

COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=128, head_dim=16,
              max_position_embeddings=512, hidden_act="silu")


# --------------------------------------------------------------------------
# float64 patches: the spots where transformers forces float32


def _rmsnorm_forward(self, hidden_states):
    input_dtype = hidden_states.dtype
    h = hidden_states.to(torch.promote_types(input_dtype, torch.float32))
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + self.variance_epsilon)
    return self.weight * h.to(input_dtype)


def _make_eager_attention(mod):
    repeat_kv = mod.repeat_kv

    def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        key_states = repeat_kv(key, module.num_key_value_groups)
        value_states = repeat_kv(value, module.num_key_value_groups)
        attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
        if attention_mask is not None:
            attn_weights = attn_weights + attention_mask
        sm_dtype = torch.promote_types(query.dtype, torch.float32)
        attn_weights = torch.nn.functional.softmax(attn_weights, dim=-1, dtype=sm_dtype).to(query.dtype)
        attn_output = torch.matmul(attn_weights, value_states)
        attn_output = attn_output.transpose(1, 2).contiguous()
        return attn_output, attn_weights

    return eager_attention_forward


def rope_inv_freq_f64(config):
    """inv_freq in float64, same formulas as transformers' modeling_rope_utils
    (default and llama3); checked against the module's float32 inv_freq."""
    rp = config.rope_parameters
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    base = rp["rope_theta"]
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    if rp["rope_type"] == "default":
        return inv
    if rp["rope_type"] != "llama3":
        raise ValueError("no float64 inv_freq for rope_type " + rp["rope_type"])
    factor, lo, hi = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"]
    old = rp["original_max_position_embeddings"]
    lo_wl, hi_wl = old / lo, old / hi
    wl = 2 * math.pi / inv
    out = torch.where(wl > lo_wl, inv / factor, inv)
    smooth = (old / wl - lo) / (hi - lo)
    smoothed = (1 - smooth) * out / factor + smooth * out
    mid = ~(wl < hi_wl) * ~(wl > lo_wl)
    return torch.where(mid, smoothed, out)


def _rotary_forward(self, x, position_ids):
    inv = getattr(self, "_inv_freq_f64", None)
    if inv is None:
        inv = rope_inv_freq_f64(self.config)
        ref = self.original_inv_freq.double()
        if not torch.allclose(inv, ref, rtol=1e-6, atol=0):
            raise AssertionError("float64 inv_freq disagrees with transformers': %s vs %s" % (inv, ref))
        self._inv_freq_f64 = inv
    dt = torch.promote_types(x.dtype, torch.float32)
    freqs = position_ids[..., None].to(dt) * inv.to(device=x.device, dtype=dt)
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)


def _router_forward(self, hidden_states):
    hidden_states = hidden_states.reshape(-1, self.hidden_dim)
    router_logits = torch.nn.functional.linear(hidden_states, self.weight)
    probs = torch.nn.functional.softmax(router_logits.to(torch.promote_types(router_logits.dtype, torch.float32)), dim=-1)
    top_value, top_index = torch.topk(probs, self.top_k, dim=-1)
    top_value /= top_value.sum(dim=-1, keepdim=True)
    return router_logits, top_value, top_index


class F64Patches:
    """Context manager: run the float32-hard-coded spots in float64."""
    MODS = [(modeling_llama, "Llama"), (modeling_mistral, "Mistral"), (modeling_mixtral, "Mixtral"),
            (modeling_qwen2, "Qwen2"), (modeling_qwen3, "Qwen3")]

    def __enter__(self):
        self.saved = []
        for mod, p in self.MODS:
            self._set(mod, "eager_attention_forward", _make_eager_attention(mod))
            self._set(getattr(mod, p + "RMSNorm"), "forward", _rmsnorm_forward)
            self._set(getattr(mod, p + "RotaryEmbedding"), "forward", _rotary_forward)
        self._set(modeling_mixtral.MixtralTopKRouter, "forward", _router_forward)
        return self

    def _set(self, obj, name, val):
        self.saved.append((obj, name, obj.__dict__[name]))
        setattr(obj, name, val)

    def __exit__(self, *a):
        for obj, name, val in reversed(self.saved):
            setattr(obj, name, val)


# --------------------------------------------------------------------------
# model building, loading, running


def init_weights(model, gen, router_std):
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied parameters appear once
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if p.dim() == 1 and "norm" in name:
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith("mlp.gate.weight"):  # Mixtral router
                p.copy_(router_std * noise)
            else:
                p.copy_(0.1 * noise)
    model.tie_weights()


def legacy_config(d, case):
    """transformers-5 config dict -> the transformers-4.x shape of the Hub."""
    d = dict(d)
    rp = d.pop("rope_parameters")
    rest = {k: v for k, v in rp.items() if k != "rope_theta"}
    d["rope_theta"] = rp["rope_theta"]
    d["rope_scaling"] = None if rest == {"rope_type": "default"} else rest
    if "dtype" in d:
        d["torch_dtype"] = d.pop("dtype")
    d.pop("layer_types", None)
    if d.get("head_dim") == d["hidden_size"] // d["num_attention_heads"]:
        del d["head_dim"]
    d.update(case.get("legacy_overrides", {}))
    return {k: d[k] for k in sorted(d)}


def load(path, cls, dtype):
    kw = dict(dtype=dtype, attn_implementation="eager")
    if cls is MixtralForCausalLM:
        kw["experts_implementation"] = "eager"
    m = cls.from_pretrained(path, **kw)
    m.eval()
    return m


@torch.no_grad()
def last_logits(model, ids):
    return model(torch.tensor([ids])).logits[0, -1]


@torch.no_grad()
def greedy(model, ids):
    inp = torch.tensor([ids])
    out = model.generate(inp, attention_mask=torch.ones_like(inp), max_new_tokens=NEW_TOKENS, min_new_tokens=0,
                         do_sample=False, use_cache=True, output_logits=True, return_dict_in_generate=True,
                         pad_token_id=0)
    new = out.sequences[0, len(ids):].tolist()
    margins = []
    for step in out.logits:
        top2 = torch.topk(step[0].double(), 2).values
        margins.append(float(top2[0] - top2[1]))
    return new, margins


@torch.no_grad()
def greedy_uncached(model, ids):
    seq = list(ids)
    for _ in range(NEW_TOKENS):
        seq.append(int(model(torch.tensor([seq]), use_cache=False).logits[0, -1].argmax()))
    return seq[len(ids):]


def maxdiff(a, b):
    return float((a.double() - b.double()).abs().max())


def build(case, seed, tmp):
    cfg = case["config_cls"](**{**COMMON, **case["config"]})
    cfg._attn_implementation = "eager"
    if case["model_cls"] is MixtralForCausalLM:
        cfg._experts_implementation = "eager"
    torch.manual_seed(seed)
    model = case["model_cls"](cfg).float().eval()
    gen = torch.Generator().manual_seed(seed)
    init_weights(model, gen, case.get("router_std", 0.5))
    prompt = torch.randint(3, cfg.vocab_size, (PROMPT_LEN,), generator=gen).tolist()
    d = os.path.join(tmp, "save")
    if os.path.exists(d):
        shutil.rmtree(d)
    model.save_pretrained(d, safe_serialization=True)
    for f in os.listdir(d):
        if f not in KEEP_FILES:
            os.remove(os.path.join(d, f))
    if case["style"] == "legacy":
        with open(os.path.join(d, "config.json")) as f:
            cd = json.load(f)
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write(json.dumps(legacy_config(cd, case), indent=2) + "\n")
    return model, prompt, d


def variant_logits(model, prompt, **changes):
    """float64 logits of the same weights under a modified config."""
    cfg = model.config.__class__.from_dict({**model.config.to_dict(), **changes})
    cfg._attn_implementation = "eager"
    m = type(model)(cfg)
    m.load_state_dict(model.state_dict())
    m = m.double().eval()
    with F64Patches():
        return last_logits(m, prompt)


class Reject(Exception):
    pass


def run_case(case, tmp):
    name = case["name"]
    for attempt in range(50):
        seed = case["seed"] + attempt
        try:
            return seed, attempt_case(case, seed, tmp)
        except Reject as e:
            print("  %s seed %d rejected: %s" % (name, seed, e), file=sys.stderr)
    raise SystemExit("%s: no acceptable seed" % name)


def attempt_case(case, seed, tmp):
    mem, prompt, d = build(case, seed, tmp)
    cls = case["model_cls"]
    m32 = load(d, cls, torch.float32)
    # the written directory reads back as the same model
    sd_mem, sd_disk = mem.state_dict(), m32.state_dict()
    assert sorted(sd_mem) == sorted(sd_disk), (sorted(sd_mem), sorted(sd_disk))
    for k in sd_mem:
        assert torch.equal(sd_mem[k], sd_disk[k]), k
    l32 = last_logits(m32, prompt)
    if not torch.equal(l32, last_logits(mem, prompt)):
        raise AssertionError("reloaded model's logits differ from the in-memory model's (config.json misread?)")
    m64 = load(d, cls, torch.float64)
    l64_hf = last_logits(m64, prompt)
    g64_hf, _ = greedy(m64, prompt)
    with F64Patches():
        l64 = last_logits(m64, prompt)
        g64, margins = greedy(m64, prompt)
        g64_nc = greedy_uncached(m64, prompt)
    g32, _ = greedy(m32, prompt)
    g32_nc = greedy_uncached(m32, prompt)
    cfg = m64.config

    if len(g64) != NEW_TOKENS:
        raise Reject("generate stopped early")
    if len(set(g64)) < 3:
        raise Reject("greedy ids too uniform: %s" % g64)
    specials = {cfg.bos_token_id, cfg.eos_token_id, 0}
    if specials & set(g64):
        raise Reject("greedy ids hit bos/eos/pad")
    if min(margins) <= MARGIN_MIN:
        raise Reject("greedy margin %.3g" % min(margins))
    if not (g64 == g64_nc == g32 == g32_nc == g64_hf):
        raise Reject("greedy differs: f64 %s uncached %s f32 %s f32-uncached %s hf-f64 %s"
                     % (g64, g64_nc, g32, g32_nc, g64_hf))
    hf_diff = maxdiff(l64_hf, l64)
    assert hf_diff < 1e-5, hf_diff
    extra = case["check"](m64, prompt, l64, g64) if "check" in case else {}
    return dict(dir=d, prompt=prompt, l64=l64, l32=l32, greedy=g64, margins=margins, hf_diff=hf_diff,
                f32_diff=maxdiff(l32, l64), model_type=cfg.model_type, extra=extra)


# --------------------------------------------------------------------------
# case-specific checks (each returns extra golden.json fields or raises Reject)


def check_llama3(m, prompt, l64, g):
    rp = m.config.rope_parameters
    dim = m.config.head_dim
    base = 1.0 / (rp["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    wl = 2 * math.pi / base
    old = rp["original_max_position_embeddings"]
    lo_wl, hi_wl = old / rp["low_freq_factor"], old / rp["high_freq_factor"]
    regions = ["high(kept)" if w < hi_wl else "low(/factor)" if w > lo_wl else "mid(smoothed)" for w in wl.tolist()]
    for r in ("high(kept)", "mid(smoothed)", "low(/factor)"):
        assert r in regions, regions
    d = maxdiff(l64, variant_logits(m, prompt, rope_parameters={"rope_type": "default", "rope_theta": rp["rope_theta"]}))
    if d < 1e-2:
        raise Reject("llama3 scaling barely matters: %g" % d)
    return {"rope_regions": regions, "rope_wavelengths": [round(w, 6) for w in wl.tolist()],
            "max_abs_diff_vs_unscaled_rope": d}


def check_mistral(m, prompt, l64, g):
    w = m.config.sliding_window
    n = m.config.num_hidden_layers
    d = maxdiff(l64, variant_logits(m, prompt, sliding_window=None))
    if d < 1e-2:
        raise Reject("sliding window barely matters: %g" % d)
    # receptive field of the last position: each layer reaches back w-1
    # positions, so over n layers positions >= L-1-n*(w-1) matter, earlier do not.
    first = PROMPT_LEN - 1 - n * (w - 1)
    assert first >= 1
    res = {}
    with F64Patches():
        for pos in (first - 1, first):
            p = list(prompt)
            p[pos] = 3 + (p[pos] - 3 + 1) % (m.config.vocab_size - 3)
            res[pos] = maxdiff(l64, last_logits(m, p))
    if res[first - 1] != 0.0 or res[first] < 1e-6:
        raise AssertionError("sliding-window receptive field not as stated: %s" % res)
    return {"max_abs_diff_vs_no_window": d,
            "receptive_field_check": "changing prompt token %d leaves last_logits bit-identical; changing token %d "
                                     "changes them by %.3g" % (first - 1, first, res[first])}


def check_qwen2(m, prompt, l64, g):
    for name, p in m.named_parameters():
        if name.endswith("bias"):
            assert float(p.detach().abs().min()) > 0, name
    assert m.config.sliding_window is None, m.config.sliding_window
    d = maxdiff(l64, variant_logits(m, prompt, use_sliding_window=True, sliding_window=4, max_window_layers=0,
                                    layer_types=None))
    if d < 1e-2:
        raise Reject("the sliding_window trap would not be detected: %g" % d)
    return {"max_abs_diff_if_sliding_window_4_were_applied": d}


def check_qwen3(m, prompt, l64, g):
    c = m.config
    q = m.model.layers[0].self_attn.q_proj.weight
    assert q.shape[0] == c.num_attention_heads * c.head_dim != c.hidden_size, q.shape
    with torch.no_grad():
        saved = [(p, p.clone()) for n, p in m.named_parameters() if "q_norm" in n or "k_norm" in n]
        for p, _ in saved:
            p.fill_(1.0)
        with F64Patches():
            l_ones = last_logits(m, prompt)
        for p, v in saved:
            p.copy_(v)
    d = maxdiff(l64, l_ones)
    if d < 1e-2:
        raise Reject("q/k norm weights barely matter: %g" % d)
    return {"max_abs_diff_if_qk_norm_weights_were_1": d}


def check_mixtral(m, prompt, l64, g):
    c = m.config
    k = c.num_experts_per_tok
    seq = prompt + g
    caught = {}
    hooks = [layer.post_attention_layernorm.register_forward_hook(
        lambda mod, i, o, li=li: caught.__setitem__(li, o[0])) for li, layer in enumerate(m.model.layers)]
    with F64Patches(), torch.no_grad():
        m(torch.tensor([seq]))
    for h in hooks:
        h.remove()
    picks0 = None
    min_margin = float("inf")
    for li, layer in enumerate(m.model.layers):
        logits = (caught[li] @ layer.mlp.gate.weight.t()).detach()
        top = torch.topk(logits, k + 1, dim=-1)
        min_margin = min(min_margin, float((top.values[:, k - 1] - top.values[:, k]).min()))
        if li == 0:
            picks0 = [sorted(r) for r in top.indices[:PROMPT_LEN, :k].tolist()]
    if min_margin <= MARGIN_MIN:
        raise Reject("router top-k margin %.3g" % min_margin)
    used = {e for r in picks0 for e in r}
    pairs = {tuple(r) for r in picks0}
    if len(used) < c.num_local_experts or len(pairs) < 4:
        raise Reject("layer-0 routing not varied: %s" % picks0)
    return {"layer0_expert_picks": picks0, "router_min_topk_margin": min_margin}


# --------------------------------------------------------------------------
# the cases

SWA_NOTE = (
    "Sliding window semantics of transformers {ver} (masking_utils.sliding_window_overlay: "
    "kv_idx > q_idx - sliding_window, and-ed with causal kv_idx <= q_idx): the query at position q attends to "
    "keys at positions q-W+1 .. q inclusive, i.e. exactly W = sliding_window positions counting itself "
    "(not W+1). With the cache, DynamicSlidingWindowLayer keeps the last W-1 keys and the new token adds "
    "itself, the same W positions. The window applies to every layer (Mistral has no layer_types).")

CASES = [
    dict(name="llama_gqa", seed=1000, style="legacy", config_cls=LlamaConfig, model_cls=LlamaForCausalLM,
         config=dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                     tie_word_embeddings=False),
         notes="Llama: RMSNorm, rotate-half RoPE (theta 10000, default rope), GQA with 4 query heads sharing 2 KV "
               "heads (query head h uses KV head h // 2), SwiGLU MLP, untied lm_head.weight. "
               "config.json in the transformers-4 shape (rope_theta top-level, rope_scaling null, no head_dim: "
               "head_dim = hidden_size / num_attention_heads = 16)."),
    dict(name="llama3_rope", seed=2000, style="legacy", config_cls=LlamaConfig, model_cls=LlamaForCausalLM,
         config=dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                     rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 64}),
         check=check_llama3,
         notes="Llama 3.1 rope scaling (rope_type llama3, factor 8, low_freq_factor 1, high_freq_factor 4, "
               "original_max_position_embeddings 64, rope_theta 500000, head_dim 16): with wavelength "
               "2*pi/inv_freq, frequencies with wavelength < 64/4=16 are kept, > 64/1=64 are divided by 8, and "
               "those in between are smoothed: s = (64/wavelength - 1)/(4 - 1), inv = (1-s)*inv/8 + s*inv. "
               "rope_regions lists the region of each of the 8 frequencies (all three occur). Tied embeddings: "
               "no lm_head.weight in the file, the lm head is model.embed_tokens.weight."),
    dict(name="mistral_swa", seed=3000, style="legacy", config_cls=MistralConfig, model_cls=MistralForCausalLM,
         config=dict(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, sliding_window=6,
                     rope_theta=10000.0, tie_word_embeddings=False),
         check=check_mistral,
         notes="Mistral with sliding_window 6 < prompt length 20, 3 layers, GQA 4/2, untied. " + SWA_NOTE),
    dict(name="qwen2_bias", seed=4000, style="legacy", config_cls=Qwen2Config, model_cls=Qwen2ForCausalLM,
         config=dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                     tie_word_embeddings=True, use_sliding_window=False),
         legacy_overrides=dict(sliding_window=4, max_window_layers=0, use_sliding_window=False),
         check=check_qwen2,
         notes="Qwen2: random non-zero q_proj/k_proj/v_proj biases (o_proj and MLP have none), GQA 4/2, tied "
               "embeddings (no lm_head.weight). config.json carries sliding_window 4 and max_window_layers 0 but "
               "use_sliding_window false, as real Qwen2 configs carry a sliding_window they do not use: "
               "transformers ignores sliding_window when use_sliding_window is false, so must a runner (applying "
               "it would change the logits by max_abs_diff_if_sliding_window_4_were_applied)."),
    dict(name="qwen3_qknorm", seed=5000, style="v5", config_cls=Qwen3Config, model_cls=Qwen3ForCausalLM,
         config=dict(num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2, head_dim=16,
                     rope_theta=1000000.0, tie_word_embeddings=False, use_sliding_window=False),
         check=check_qwen3,
         notes="Qwen3: per-head RMSNorm on queries and keys (self_attn.q_norm/k_norm, weight shape [head_dim], "
               "random weights) applied after the projection and before RoPE; head_dim 16 set explicitly with "
               "8 query heads, so q_proj is [128, 64] and o_proj [64, 128] (head_dim != hidden/heads); GQA 8/2; "
               "no biases; untied. config.json as transformers 5 save_pretrained writes it (rope_parameters "
               "holding rope_theta, layer_types) - the one case in that shape."),
    dict(name="mixtral_moe", seed=6000, style="legacy", config_cls=MixtralConfig, model_cls=MixtralForCausalLM,
         config=dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                     num_experts_per_tok=2, intermediate_size=64, rope_theta=1000000.0,
                     tie_word_embeddings=False),
         router_std=0.5, check=check_mixtral,
         notes="Mixtral: 4 experts (intermediate_size 64 to keep the file small), top-2. Per token: router_logits = gate.weight @ x; p = softmax over all 4; "
               "take the top-2 p and renormalise them to sum 1; output = sum of w_i * w2(silu(w1 x) * w3 x) of "
               "the two experts (block_sparse_moe.experts.N.w1/w2/w3, gate = block_sparse_moe.gate). "
               "layer0_expert_picks: the two experts (sorted) each prompt token picks at layer 0; "
               "router_min_topk_margin: the smallest gap between the 2nd and 3rd router logit over all layers and "
               "all prompt+generated positions (so a float32 runner picks the same experts). GQA 4/2, untied."),
]


# --------------------------------------------------------------------------
# output


def f32_repr(x):
    return float(repr(np.float32(x)).replace("np.float32(", "").rstrip(")"))


def write_golden(path, obj):
    lines = ["{"]
    items = list(obj.items())
    for i, (k, v) in enumerate(items):
        lines.append("  %s: %s%s" % (json.dumps(k), json.dumps(v, ensure_ascii=True), "," if i + 1 < len(items) else ""))
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "arch"))
    ap.add_argument("--case", action="append")
    args = ap.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    cases = [c for c in CASES if not args.case or c["name"] in args.case]
    summary = []
    for case in cases:
        with tempfile.TemporaryDirectory() as tmp:
            seed, r = run_case(case, tmp)
            out = os.path.join(args.out, case["name"])
            if os.path.exists(out):
                shutil.rmtree(out)
            os.makedirs(out)
            for f in KEEP_FILES:
                shutil.copyfile(os.path.join(r["dir"], f), os.path.join(out, f))
        notes = case["notes"]
        if "{ver}" in notes:
            notes = notes.format(ver=transformers.__version__)
        golden = {
            "case": case["name"],
            "model_type": r["model_type"],
            "config_style": case["style"],
            "seed": seed,
            "prompt_ids": r["prompt"],
            "greedy_ids": r["greedy"],
            "greedy_min_margin": r["margins"] and min(r["margins"]),
            "last_logits_argmax": int(r["l64"].argmax()),
            "f32_max_abs_diff": r["f32_diff"],
            "hf_f64_unpatched_max_abs_diff": r["hf_diff"],
            **r["extra"],
            "notes": notes,
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
            "last_logits": [float(x) for x in r["l64"].tolist()],
            "last_logits_f32": [f32_repr(x) for x in r["l32"].tolist()],
        }
        write_golden(os.path.join(out, "golden.json"), golden)
        summary.append((case["name"], seed, r["f32_diff"], r["hf_diff"], r["greedy"], min(r["margins"])))
    for s in summary:
        print("%-14s seed %d  max|f32-f64| %.3g  max|hf.double()-f64| %.3g  greedy %s  min margin %.3g" % s)


if __name__ == "__main__":
    main()
