#!/usr/bin/env python3
"""Writes tiny deterministic Hugging Face checkpoint directories.

Each family gets the tensor names, shapes and module order that Hugging Face
transformers (or the model's remote code) writes, a matching config.json, a
generation_config.json and a tiny tokenizer. Values are pseudo-random from
random.Random, seeded per tensor from --seed and the tensor name, so they do
not depend on sharding.

    make_synthetic.py --family NAME --out DIR [--dtype F32|F16|BF16]
                      [--layers N] [--shards K] [--seed S]
    make_synthetic.py --list

Standard library only. Exit status: 0 ok, 1 failure, 2 usage.

A Llama-2-7B-sized checkpoint is written by scripts/gen_llama7b.c, not here.
"""

import argparse
import json
import math
import os
import random
import struct
import sys

HIDDEN = 16
INTER = 32
VOCAB = 64
HEADS = 4

DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2}
TORCH_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


# ---------------------------------------------------------------- families
#
# Each family function returns (config, tensors) where tensors is a list of
# (name, shape, kind) in module (state_dict) order and kind is one of
# "w" (weight matrix / embedding), "norm", "bias", or ("const", [values]).

def _llama_like_config(arch, model_type, layers, kv_heads, tie, extra=None):
    cfg = {
        "architectures": [arch],
        "model_type": model_type,
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "num_hidden_layers": layers,
        "num_attention_heads": HEADS,
        "num_key_value_heads": kv_heads,
        "vocab_size": VOCAB,
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-05,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "rope_theta": 10000.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "use_cache": True,
        "tie_word_embeddings": tie,
    }
    if extra:
        cfg.update(extra)
    return cfg


def _attn(prefix, q_out, kv_out, hidden, qkv_bias=False, o_bias=False):
    """self_attn q/k/v/o projections in module order (weight before bias)."""
    t = []
    for p, rows in (("q", q_out), ("k", kv_out), ("v", kv_out)):
        t.append((f"{prefix}.{p}_proj.weight", [rows, hidden], "w"))
        if qkv_bias:
            t.append((f"{prefix}.{p}_proj.bias", [rows], "bias"))
    t.append((f"{prefix}.o_proj.weight", [hidden, q_out], "w"))
    if o_bias:
        t.append((f"{prefix}.o_proj.bias", [hidden], "bias"))
    return t


def _mlp(prefix, order=("gate", "up", "down")):
    t = []
    for p in order:
        shape = [HIDDEN, INTER] if p == "down" else [INTER, HIDDEN]
        t.append((f"{prefix}.{p}_proj.weight", shape, "w"))
    return t


def _llama_family(layers, arch="LlamaForCausalLM", model_type="llama", kv_heads=HEADS,
                  tie=False, extra=None, qkv_bias=False, o_bias=False, qk_norm=False,
                  head_dim=None, mlp_order=("gate", "up", "down")):
    hd = head_dim or HIDDEN // HEADS
    if head_dim is not None:
        extra = dict(extra or {}, head_dim=head_dim)
    cfg = _llama_like_config(arch, model_type, layers, kv_heads, tie, extra)
    t = [("model.embed_tokens.weight", [VOCAB, HIDDEN], "w")]
    for n in range(layers):
        p = f"model.layers.{n}"
        t += _attn(f"{p}.self_attn", HEADS * hd, kv_heads * hd, HIDDEN, qkv_bias, o_bias)
        if qk_norm:
            t.append((f"{p}.self_attn.q_norm.weight", [hd], "norm"))
            t.append((f"{p}.self_attn.k_norm.weight", [hd], "norm"))
        t += _mlp(f"{p}.mlp", mlp_order)
        t.append((f"{p}.input_layernorm.weight", [HIDDEN], "norm"))
        t.append((f"{p}.post_attention_layernorm.weight", [HIDDEN], "norm"))
    t.append(("model.norm.weight", [HIDDEN], "norm"))
    if not tie:
        t.append(("lm_head.weight", [VOCAB, HIDDEN], "w"))
    return cfg, t


def fam_llama(layers):
    # Llama 1/2: multi-head attention (kv heads == heads).
    return _llama_family(layers, extra={"pretraining_tp": 1, "attention_bias": False})


def fam_llama_tied(layers):
    # Tied embeddings: transformers drops lm_head.weight from the checkpoint.
    return _llama_family(layers, tie=True, extra={"attention_bias": False})


def fam_llama3(layers):
    return _llama_family(layers, kv_heads=2, extra={
        "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009],
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 8.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "attention_bias": False,
        "mlp_bias": False,
    })


def fam_mistral(layers):
    return _llama_family(layers, arch="MistralForCausalLM", model_type="mistral", kv_heads=2,
                         extra={"sliding_window": 4096})


def fam_mixtral(layers, experts=4):
    cfg = _llama_like_config("MixtralForCausalLM", "mixtral", layers, 2, False, {
        "num_local_experts": experts,
        "num_experts_per_tok": 2,
        "output_router_logits": False,
        "router_aux_loss_coef": 0.02,
        "sliding_window": None,
    })
    hd = HIDDEN // HEADS
    t = [("model.embed_tokens.weight", [VOCAB, HIDDEN], "w")]
    for n in range(layers):
        p = f"model.layers.{n}"
        t += _attn(f"{p}.self_attn", HEADS * hd, 2 * hd, HIDDEN)
        t.append((f"{p}.block_sparse_moe.gate.weight", [experts, HIDDEN], "w"))
        for e in range(experts):
            q = f"{p}.block_sparse_moe.experts.{e}"
            t.append((f"{q}.w1.weight", [INTER, HIDDEN], "w"))
            t.append((f"{q}.w2.weight", [HIDDEN, INTER], "w"))
            t.append((f"{q}.w3.weight", [INTER, HIDDEN], "w"))
        t.append((f"{p}.input_layernorm.weight", [HIDDEN], "norm"))
        t.append((f"{p}.post_attention_layernorm.weight", [HIDDEN], "norm"))
    t.append(("model.norm.weight", [HIDDEN], "norm"))
    t.append(("lm_head.weight", [VOCAB, HIDDEN], "w"))
    return cfg, t


def fam_qwen(layers):
    # Qwen v1 remote code: intermediate_size is twice the width of w1/w2.
    ff = INTER // 2
    cfg = {
        "architectures": ["QWenLMHeadModel"],
        "model_type": "qwen",
        "auto_map": {
            "AutoConfig": "configuration_qwen.QWenConfig",
            "AutoModelForCausalLM": "modeling_qwen.QWenLMHeadModel",
        },
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "num_hidden_layers": layers,
        "num_attention_heads": HEADS,
        "kv_channels": HIDDEN // HEADS,
        "vocab_size": VOCAB,
        "seq_length": 128,
        "max_position_embeddings": 128,
        "layer_norm_epsilon": 1e-06,
        "rotary_emb_base": 10000,
        "rotary_pct": 1.0,
        "no_bias": True,
        "scale_attn_weights": True,
        "use_flash_attn": False,
        "tie_word_embeddings": False,
    }
    t = [("transformer.wte.weight", [VOCAB, HIDDEN], "w")]
    for n in range(layers):
        p = f"transformer.h.{n}"
        t.append((f"{p}.ln_1.weight", [HIDDEN], "norm"))
        t.append((f"{p}.attn.c_attn.weight", [3 * HIDDEN, HIDDEN], "w"))
        t.append((f"{p}.attn.c_attn.bias", [3 * HIDDEN], "bias"))
        t.append((f"{p}.attn.c_proj.weight", [HIDDEN, HIDDEN], "w"))
        t.append((f"{p}.ln_2.weight", [HIDDEN], "norm"))
        t.append((f"{p}.mlp.w1.weight", [ff, HIDDEN], "w"))
        t.append((f"{p}.mlp.w2.weight", [ff, HIDDEN], "w"))
        t.append((f"{p}.mlp.c_proj.weight", [HIDDEN, ff], "w"))
    t.append(("transformer.ln_f.weight", [HIDDEN], "norm"))
    t.append(("lm_head.weight", [VOCAB, HIDDEN], "w"))
    return cfg, t


def fam_qwen2(layers):
    return _llama_family(layers, arch="Qwen2ForCausalLM", model_type="qwen2", kv_heads=2,
                         qkv_bias=True, extra={
                             "use_sliding_window": False,
                             "sliding_window": 4096,
                             "max_window_layers": layers,
                             "rope_theta": 1000000.0,
                             "rms_norm_eps": 1e-06,
                         })


def fam_qwen3(layers):
    # Qwen3: head_dim is its own key (q_proj is heads*head_dim wide, which
    # need not equal hidden_size) and q/k get per-head RMSNorms.
    return _llama_family(layers, arch="Qwen3ForCausalLM", model_type="qwen3", kv_heads=2,
                         qk_norm=True, head_dim=8, extra={
                             "attention_bias": False,
                             "use_sliding_window": False,
                             "sliding_window": None,
                             "max_window_layers": layers,
                             "rope_theta": 1000000.0,
                             "rms_norm_eps": 1e-06,
                         })


def fam_chatglm(layers):
    # ChatGLM2/3 remote code. Multi-query attention: query_key_value holds
    # heads*kv_channels query rows plus 2*groups*kv_channels key/value rows.
    # rotary_pos_emb.inv_freq is a persistent buffer of rotary_dim/2 =
    # kv_channels/2 frequencies taken with step 2, i.e. kv_channels/4 values.
    heads, kvc, groups = 2, 8, 1
    qkv = heads * kvc + 2 * groups * kvc
    cfg = {
        "architectures": ["ChatGLMModel"],
        "model_type": "chatglm",
        "auto_map": {
            "AutoConfig": "configuration_chatglm.ChatGLMConfig",
            "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
            "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
        },
        "num_layers": layers,
        "hidden_size": HIDDEN,
        "ffn_hidden_size": INTER,
        "kv_channels": kvc,
        "num_attention_heads": heads,
        "multi_query_attention": True,
        "multi_query_group_num": groups,
        "padded_vocab_size": VOCAB,
        "seq_length": 128,
        "layernorm_epsilon": 1e-05,
        "rmsnorm": True,
        "add_bias_linear": False,
        "add_qkv_bias": True,
        "apply_residual_connection_post_layernorm": False,
        "post_layer_norm": True,
        "original_rope": True,
        "fp32_residual_connection": False,
        "apply_query_key_layer_scaling": True,
        "attention_softmax_in_fp32": True,
        "bias_dropout_fusion": True,
        "hidden_dropout": 0.0,
        "attention_dropout": 0.0,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "tie_word_embeddings": False,
    }
    dim = kvc // 2
    inv_freq = [1.0 / (10000.0 ** (i / dim)) for i in range(0, dim, 2)]
    t = [("transformer.embedding.word_embeddings.weight", [VOCAB, HIDDEN], "w"),
         ("transformer.rotary_pos_emb.inv_freq", [len(inv_freq)], ("const", inv_freq))]
    for n in range(layers):
        p = f"transformer.encoder.layers.{n}"
        t.append((f"{p}.input_layernorm.weight", [HIDDEN], "norm"))
        t.append((f"{p}.self_attention.query_key_value.weight", [qkv, HIDDEN], "w"))
        t.append((f"{p}.self_attention.query_key_value.bias", [qkv], "bias"))
        t.append((f"{p}.self_attention.dense.weight", [HIDDEN, heads * kvc], "w"))
        t.append((f"{p}.post_attention_layernorm.weight", [HIDDEN], "norm"))
        t.append((f"{p}.mlp.dense_h_to_4h.weight", [2 * INTER, HIDDEN], "w"))
        t.append((f"{p}.mlp.dense_4h_to_h.weight", [HIDDEN, INTER], "w"))
    t.append(("transformer.encoder.final_layernorm.weight", [HIDDEN], "norm"))
    t.append(("transformer.output_layer.weight", [VOCAB, HIDDEN], "w"))
    return cfg, t


def fam_baichuan(layers):
    cfg = {
        "architectures": ["BaichuanForCausalLM"],
        "model_type": "baichuan",
        "auto_map": {
            "AutoConfig": "configuration_baichuan.BaichuanConfig",
            "AutoModelForCausalLM": "modeling_baichuan.BaichuanForCausalLM",
        },
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "num_hidden_layers": layers,
        "num_attention_heads": HEADS,
        "vocab_size": VOCAB,
        "max_position_embeddings": 128,
        "model_max_length": 128,
        "rms_norm_eps": 1e-06,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "use_cache": True,
        "tie_word_embeddings": False,
    }
    t = [("model.embed_tokens.weight", [VOCAB, HIDDEN], "w")]
    for n in range(layers):
        p = f"model.layers.{n}"
        t.append((f"{p}.self_attn.W_pack.weight", [3 * HIDDEN, HIDDEN], "w"))
        t.append((f"{p}.self_attn.o_proj.weight", [HIDDEN, HIDDEN], "w"))
        t += _mlp(f"{p}.mlp", ("gate", "down", "up"))
        t.append((f"{p}.input_layernorm.weight", [HIDDEN], "norm"))
        t.append((f"{p}.post_attention_layernorm.weight", [HIDDEN], "norm"))
    t.append(("model.norm.weight", [HIDDEN], "norm"))
    t.append(("lm_head.weight", [VOCAB, HIDDEN], "w"))
    return cfg, t


def fam_internlm(layers):
    cfg, t = _llama_family(layers, arch="InternLMForCausalLM", model_type="internlm",
                           qkv_bias=True, o_bias=True, mlp_order=("gate", "down", "up"),
                           extra={"bias": True, "rms_norm_eps": 1e-06})
    del cfg["num_key_value_heads"]  # InternLM (v1) has no GQA and no such key
    cfg["auto_map"] = {
        "AutoConfig": "configuration_internlm.InternLMConfig",
        "AutoModelForCausalLM": "modeling_internlm.InternLMForCausalLM",
    }
    return cfg, t


def fam_internlm2(layers):
    kv = 2
    hd = HIDDEN // HEADS
    cfg = _llama_like_config("InternLM2ForCausalLM", "internlm2", layers, kv, False, {
        "auto_map": {
            "AutoConfig": "configuration_internlm2.InternLM2Config",
            "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
        },
        "bias": False,
        "attn_implementation": "eager",
        "rope_theta": 1000000,
        "rope_scaling": None,
        "pad_token_id": 2,
    })
    t = [("model.tok_embeddings.weight", [VOCAB, HIDDEN], "w")]
    for n in range(layers):
        p = f"model.layers.{n}"
        t.append((f"{p}.attention.wqkv.weight", [(HEADS + 2 * kv) * hd, HIDDEN], "w"))
        t.append((f"{p}.attention.wo.weight", [HIDDEN, HEADS * hd], "w"))
        t.append((f"{p}.feed_forward.w1.weight", [INTER, HIDDEN], "w"))
        t.append((f"{p}.feed_forward.w3.weight", [INTER, HIDDEN], "w"))
        t.append((f"{p}.feed_forward.w2.weight", [HIDDEN, INTER], "w"))
        t.append((f"{p}.attention_norm.weight", [HIDDEN], "norm"))
        t.append((f"{p}.ffn_norm.weight", [HIDDEN], "norm"))
    t.append(("model.norm.weight", [HIDDEN], "norm"))
    t.append(("output.weight", [VOCAB, HIDDEN], "w"))
    return cfg, t


def fam_generic(layers):
    # An architecture the tool does not know: exercises the `.blocks.N.`
    # fallback grouping.
    cfg = {
        "architectures": ["FooForCausalLM"],
        "model_type": "foo",
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "num_hidden_layers": layers,
        "num_attention_heads": HEADS,
        "vocab_size": VOCAB,
        "tie_word_embeddings": False,
    }
    t = [("model.embed_tokens.weight", [VOCAB, HIDDEN], "w")]
    for n in range(layers):
        p = f"model.blocks.{n}"
        t.append((f"{p}.attn.weight", [HIDDEN, HIDDEN], "w"))
        t.append((f"{p}.ffn.weight", [INTER, HIDDEN], "w"))
        t.append((f"{p}.norm.weight", [HIDDEN], "norm"))
    t.append(("model.norm.weight", [HIDDEN], "norm"))
    t.append(("lm_head.weight", [VOCAB, HIDDEN], "w"))
    return cfg, t


FAMILIES = {
    "llama": fam_llama,
    "llama-tied": fam_llama_tied,
    "llama3": fam_llama3,
    "mistral": fam_mistral,
    "mixtral": fam_mixtral,
    "qwen": fam_qwen,
    "qwen2": fam_qwen2,
    "qwen3": fam_qwen3,
    "chatglm": fam_chatglm,
    "baichuan": fam_baichuan,
    "internlm": fam_internlm,
    "internlm2": fam_internlm2,
    "generic": fam_generic,
}


# ---------------------------------------------------------------- values

def f32_to_bf16_bits(x):
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    if (bits & 0x7F800000) == 0x7F800000 and (bits & 0x007FFFFF):
        return ((bits >> 16) | 0x0040) & 0xFFFF  # quiet NaN
    bits += 0x7FFF + ((bits >> 16) & 1)  # round to nearest, ties to even
    return (bits >> 16) & 0xFFFF


def encode(values, dtype):
    n = len(values)
    if dtype == "F32":
        return struct.pack(f"<{n}f", *values)
    if dtype == "F16":
        return struct.pack(f"<{n}e", *values)
    if dtype == "BF16":
        return struct.pack(f"<{n}H", *(f32_to_bf16_bits(v) for v in values))
    raise ValueError(dtype)


def tensor_values(name, shape, kind, seed):
    n = math.prod(shape)
    if isinstance(kind, tuple) and kind[0] == "const":
        return list(kind[1])
    rng = random.Random(f"{seed}:{name}")  # str seeds are hashed with SHA-512: stable
    if kind == "norm":
        return [1.0 + rng.gauss(0.0, 0.05) for _ in range(n)]
    if kind == "bias":
        return [rng.gauss(0.0, 0.01) for _ in range(n)]
    return [rng.gauss(0.0, 0.02) for _ in range(n)]


# ---------------------------------------------------------------- writing

def safetensors_bytes(tensors, dtype, metadata=None):
    """tensors: list of (name, shape, data). Returns the file bytes, laid out
    as the safetensors library does: one dtype per file, so sorted by name;
    compact JSON with __metadata__ first; header padded with spaces to a
    multiple of 8; data_offsets contiguous from 0."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    off = 0
    blobs = []
    for name, shape, data in sorted(tensors, key=lambda t: t[0]):
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    hj = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    hj += b" " * (-len(hj) % 8)
    return struct.pack("<Q", len(hj)) + hj + b"".join(blobs)


def split_shards(items, k):
    """Contiguous groups in module order, roughly equal in bytes, none empty."""
    if k > len(items):
        raise SystemExit(f"make_synthetic: --shards {k} exceeds the {len(items)} tensors")
    total = sum(len(d) for _, _, d in items)
    shards = [[] for _ in range(k)]
    acc = 0
    s = 0
    for i, it in enumerate(items):
        left = len(items) - i
        # Move on once this shard reached its share, or when the remaining
        # tensors are just enough to give every later shard one.
        if shards[s] and s < k - 1 and (acc >= total * (s + 1) / k or left <= k - 1 - s):
            s += 1
        shards[s].append(it)
        acc += len(it[2])
    return shards


def write_file(path, data, binary=False):
    tmp = path + ".tmp"
    with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
        f.write(data)
    os.replace(tmp, path)


def write_json(path, obj, sort_keys=False):
    write_file(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


def tokenizer_files(cfg):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(3, VOCAB):
        vocab[f"t{i}"] = i
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for c, i in (("<unk>", 0), ("<s>", 1), ("</s>", 2))
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    }
    tok_cfg = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "clean_up_tokenization_spaces": False,
        "model_max_length": 128,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    return tok, tok_cfg


def make(family, out, dtype="F32", layers=2, shards=1, seed=0):
    cfg, tensors = FAMILIES[family](layers)
    cfg["torch_dtype"] = TORCH_DTYPE[dtype]
    cfg["transformers_version"] = "4.44.0"
    names = [t[0] for t in tensors]
    assert len(set(names)) == len(names), "duplicate tensor name"

    os.makedirs(out, exist_ok=True)
    # Drop checkpoint files a previous run may have left (other shard count).
    for fn in os.listdir(out):
        if fn.endswith(".safetensors") or fn == "model.safetensors.index.json":
            os.remove(os.path.join(out, fn))

    items = [(name, shape, encode(tensor_values(name, shape, kind, seed), dtype))
             for name, shape, kind in tensors]
    for name, shape, data in items:
        assert len(data) == math.prod(shape) * DTYPE_SIZE[dtype], name
    meta = {"format": "pt"}
    if shards <= 1:
        write_file(os.path.join(out, "model.safetensors"),
                   safetensors_bytes(items, dtype, meta), binary=True)
    else:
        weight_map = {}
        for i, group in enumerate(split_shards(items, shards)):
            fn = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            write_file(os.path.join(out, fn), safetensors_bytes(group, dtype, meta), binary=True)
            for name, _, _ in group:
                weight_map[name] = fn
        total = sum(len(d) for _, _, d in items)
        write_json(os.path.join(out, "model.safetensors.index.json"),
                   {"metadata": {"total_size": total}, "weight_map": weight_map},
                   sort_keys=True)

    write_json(os.path.join(out, "config.json"), cfg, sort_keys=True)
    gen = {"_from_model_config": True, "transformers_version": cfg["transformers_version"]}
    for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if k in cfg:
            gen[k] = cfg[k]
    write_json(os.path.join(out, "generation_config.json"), gen, sort_keys=True)
    tok, tok_cfg = tokenizer_files(cfg)
    write_json(os.path.join(out, "tokenizer.json"), tok)
    write_json(os.path.join(out, "tokenizer_config.json"), tok_cfg, sort_keys=True)
    return cfg, items


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Write a tiny deterministic Hugging Face checkpoint directory.")
    ap.add_argument("--list", action="store_true", help="print the families and exit")
    ap.add_argument("--family", choices=sorted(FAMILIES), metavar="NAME")
    ap.add_argument("--out", metavar="DIR")
    ap.add_argument("--dtype", default="F32", choices=sorted(DTYPE_SIZE))
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.list:
        for f in FAMILIES:
            print(f)
        return 0
    if a.shape is not None:
        ap.error("--shape is not done in python: compile and run scripts/gen_llama7b.c "
                 "(see scripts/bench_split.sh)")
    if not a.family or not a.out:
        ap.error("--family and --out are required (or --list)")
    if a.layers < 1:
        ap.error("--layers must be >= 1")
    if a.shards < 1:
        ap.error("--shards must be >= 1")
    try:
        make(a.family, a.out, a.dtype, a.layers, a.shards, a.seed)
    except OSError as e:
        print(f"make_synthetic: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
