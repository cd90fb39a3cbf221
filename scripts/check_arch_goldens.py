#!/usr/bin/env python3
"""Independent float64 numpy re-implementation of the tests/data/arch cases
(no torch, no transformers; only numpy): reads config.json and
model.safetensors the way a runner must, recomputes last_logits and the
greedy ids (uncached: a full forward per step) and compares them with
golden.json.  It is an executable statement of the semantics the goldens
encode (GQA head mapping, rotate-half RoPE incl. llama3 scaling, the sliding
window, Qwen2 biases, Qwen3 q/k norm, Mixtral top-2 routing, tied
embeddings, both config.json shapes).

usage: check_arch_goldens.py [DIR ...]   (default: every tests/data/arch/*/)
exit status 1 if any case disagrees by more than 1e-9.
"""
import glob
import json
import math
import os
import sys

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        b = f.read()
    n = int.from_bytes(b[:8], "little")
    header = json.loads(b[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        s, e = info["data_offsets"]
        out[name] = np.frombuffer(b[8 + n + s:8 + n + e], "<f4").reshape(info["shape"]).astype(np.float64)
    return out


def rope_params(cfg):
    if "rope_parameters" in cfg:  # transformers 5 shape
        rp = dict(cfg["rope_parameters"])
        theta = rp.pop("rope_theta")
    else:  # transformers 4 shape
        theta = cfg.get("rope_theta", 10000.0)
        rp = dict(cfg.get("rope_scaling") or {"rope_type": "default"})
    rp["rope_type"] = rp.get("rope_type", rp.get("type"))
    return theta, rp


def inv_freq(cfg, head_dim):
    theta, rp = rope_params(cfg)
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if rp["rope_type"] == "default":
        return inv
    assert rp["rope_type"] == "llama3", rp
    factor, lo, hi, old = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"], rp["original_max_position_embeddings"]
    wl = 2 * math.pi / inv
    out = np.where(wl > old / lo, inv / factor, inv)
    s = (old / wl - lo) / (hi - lo)
    mid = (wl >= old / hi) & (wl <= old / lo)
    return np.where(mid, (1 - s) * out / factor + s * out, out)


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1 + np.exp(-x))


def rope(x, cos, sin):  # x [T, H, D]; rotate-half
    d = x.shape[-1] // 2
    rot = np.concatenate([-x[..., d:], x[..., :d]], -1)
    return x * cos[:, None, :] + rot * sin[:, None, :]


def sliding_window(cfg, layer):
    mt = cfg["model_type"]
    if mt in ("qwen2", "qwen3"):
        if not cfg.get("use_sliding_window", False):
            return None
        if "layer_types" in cfg:
            return cfg["sliding_window"] if cfg["layer_types"][layer] == "sliding_attention" else None
        return cfg["sliding_window"] if layer >= cfg.get("max_window_layers", 0) else None
    return cfg.get("sliding_window")


def forward(cfg, W, ids):
    T = len(ids)
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    eps = cfg["rms_norm_eps"]
    f = np.arange(T, dtype=np.float64)[:, None] * inv_freq(cfg, hd)[None, :]
    emb = np.concatenate([f, f], -1)
    cos, sin = np.cos(emb), np.sin(emb)
    x = W["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        h = rms(x, W[p + "input_layernorm.weight"], eps)
        q, k, v = (h @ W[p + "self_attn.%s_proj.weight" % n].T + W.get(p + "self_attn.%s_proj.bias" % n, 0)
                   for n in "qkv")
        q, k, v = q.reshape(T, nh, hd), k.reshape(T, nkv, hd), v.reshape(T, nkv, hd)
        if p + "self_attn.q_norm.weight" in W:  # Qwen3: per-head RMSNorm before RoPE
            q = rms(q, W[p + "self_attn.q_norm.weight"], eps)
            k = rms(k, W[p + "self_attn.k_norm.weight"], eps)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        win = sliding_window(cfg, l)
        qi, ki = np.arange(T)[:, None], np.arange(T)[None, :]
        allowed = ki <= qi
        if win is not None:
            allowed &= ki > qi - win  # W positions including itself
        att = np.empty((T, nh, hd))
        for hh in range(nh):
            kv = hh // (nh // nkv)
            s = (q[:, hh] @ k[:, kv].T) / math.sqrt(hd)
            s = np.where(allowed, s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            att[:, hh] = (s / s.sum(-1, keepdims=True)) @ v[:, kv]
        x = x + att.reshape(T, nh * hd) @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"], eps)
        if cfg["model_type"] == "mixtral":
            mp = p + "block_sparse_moe."
            r = h @ W[mp + "gate.weight"].T
            pr = np.exp(r - r.max(-1, keepdims=True))
            pr /= pr.sum(-1, keepdims=True)
            out = np.zeros_like(h)
            for t in range(T):
                top = np.argsort(-pr[t], kind="stable")[:cfg["num_experts_per_tok"]]
                w = pr[t, top] / pr[t, top].sum()
                for e, we in zip(top, w):
                    ep = mp + "experts.%d." % e
                    out[t] += we * (W[ep + "w2.weight"] @ (silu(W[ep + "w1.weight"] @ h[t]) * (W[ep + "w3.weight"] @ h[t])))
            x = x + out
        else:
            x = x + (silu(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"], eps)
    lm = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", True) else W["lm_head.weight"]
    assert ("lm_head.weight" in W) == (not cfg.get("tie_word_embeddings", True))
    return x[-1] @ lm.T


def check(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    W = load_safetensors(os.path.join(d, "model.safetensors"))
    g = json.load(open(os.path.join(d, "golden.json")))
    logits = forward(cfg, W, g["prompt_ids"])
    diff = float(np.abs(logits - np.array(g["last_logits"])).max())
    diff32 = float(np.abs(np.array(g["last_logits_f32"]) - np.array(g["last_logits"])).max())
    seq = list(g["prompt_ids"])
    for _ in range(len(g["greedy_ids"])):
        seq.append(int(np.argmax(forward(cfg, W, seq))))
    ok = diff < 1e-9 and seq[len(g["prompt_ids"]):] == g["greedy_ids"]
    print("%-14s %s  max|numpy-golden| %.3g  max|f32-golden| %.3g  greedy %s" %
          (g["case"], "ok  " if ok else "FAIL", diff, diff32, "match" if seq[len(g["prompt_ids"]):] == g["greedy_ids"] else seq[len(g["prompt_ids"]):]))
    return ok


def main():
    dirs = sys.argv[1:] or sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "arch", "*", "")))
    sys.exit(0 if all([check(d) for d in dirs]) else 1)


if __name__ == "__main__":
    main()
