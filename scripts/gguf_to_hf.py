#!/usr/bin/env python3
"""Turns a llama-architecture GGUF file into a Hugging Face checkpoint directory.

    gguf_to_hf.py [--dtype f32|bf16] [--force] MODEL.gguf OUT_DIR

Writes model.safetensors, config.json, generation_config.json, tokenizer.json
and tokenizer_config.json. Every tensor is dequantized to float32 (any type
gguf.quants.dequantize knows: F32, F16, BF16, Q4_0, Q4_1, Q8_0, the K-quants,
...) and stored as F32 or BF16 (round to nearest even; the default).

What llama.cpp's convert_hf_to_gguf.py changed is undone:
  - names: token_embd -> model.embed_tokens, blk.N.attn_q -> ...q_proj, ...
  - the Q and K projection rows, which LlamaModel.permute reorders from HF's
    rotate_half layout (the two halves of each head) to interleaved pairs;
  - the tokenizer, rebuilt as a byte-level BPE tokenizer.json from
    tokenizer.ggml.{tokens,token_type,merges} and the pre-tokenizer named by
    tokenizer.ggml.pre.
A GGUF that holds quantized weights gives the quantized values, not the
original ones: the result runs like the GGUF, not like the first checkpoint.

The output directory is built beside OUT_DIR (OUT_DIR.partial) and renamed
into place at the end, so OUT_DIR is either complete or absent. An existing
OUT_DIR is an error unless --force, which replaces only a directory that holds
nothing but the five files above.

Needs the PyPI packages gguf (0.10 or newer) and numpy; nothing else.
Exit status: 0 ok, 1 failure, 2 usage.
"""

import argparse
import json
import os
import shutil
import struct
import sys

try:
    import numpy as np
    import gguf
    from gguf import quants
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.stderr.write("error: %s (needs: pip install 'gguf>=0.10' numpy)\n" % e)
    sys.exit(1)


class ConvertError(Exception):
    pass


# ---------------------------------------------------------------- metadata

def field(reader, key, default=None, required=True):
    f = reader.fields.get(key)
    if f is None:
        if required and default is None:
            raise ConvertError("missing GGUF key '%s'" % key)
        return default
    return f.contents()


def f32_repr(x):
    """The shortest decimal that reads back as the same float32 (1e-05, not
    9.999999747378752e-06)."""
    return float(str(np.float32(x)))


def read_hparams(reader):
    arch = field(reader, "general.architecture")
    if arch != "llama":
        raise ConvertError("architecture '%s' is not supported (only llama)" % arch)
    p = "llama."
    hp = {
        "n_layer": int(field(reader, p + "block_count")),
        "n_embd": int(field(reader, p + "embedding_length")),
        "n_ff": int(field(reader, p + "feed_forward_length")),
        "n_head": int(field(reader, p + "attention.head_count")),
        "n_ctx": int(field(reader, p + "context_length")),
        "eps": f32_repr(field(reader, p + "attention.layer_norm_rms_epsilon")),
        "rope_theta": f32_repr(field(reader, p + "rope.freq_base", 10000.0)),
    }
    hp["n_head_kv"] = int(field(reader, p + "attention.head_count_kv", hp["n_head"]))
    if hp["n_embd"] % hp["n_head"] or hp["n_head"] % hp["n_head_kv"]:
        raise ConvertError("head counts %d/%d do not divide hidden size %d"
                           % (hp["n_head"], hp["n_head_kv"], hp["n_embd"]))
    hp["head_dim"] = int(field(reader, p + "attention.key_length",
                               hp["n_embd"] // hp["n_head"]))
    rot = int(field(reader, p + "rope.dimension_count", hp["head_dim"]))
    if rot != hp["head_dim"] or hp["head_dim"] % 2:
        raise ConvertError("partial or odd rotary dimension %d (head_dim %d) is not supported"
                           % (rot, hp["head_dim"]))
    if field(reader, p + "rope.scaling.type", "none", required=False) not in ("none", None):
        raise ConvertError("rope scaling is not supported")
    return hp


# ---------------------------------------------------------------- tensors

def hf_name(gguf_name):
    """GGUF tensor name -> (HF name, which permutation to undo or None)."""
    fixed = {
        "token_embd.weight": "model.embed_tokens.weight",
        "output_norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight",
    }
    if gguf_name in fixed:
        return fixed[gguf_name], None
    parts = gguf_name.split(".", 2)
    if len(parts) != 3 or parts[0] != "blk" or not parts[1].isdigit():
        raise ConvertError("unexpected tensor '%s'" % gguf_name)
    per_layer = {
        "attn_q.weight": ("self_attn.q_proj.weight", "q"),
        "attn_k.weight": ("self_attn.k_proj.weight", "k"),
        "attn_v.weight": ("self_attn.v_proj.weight", None),
        "attn_output.weight": ("self_attn.o_proj.weight", None),
        "ffn_gate.weight": ("mlp.gate_proj.weight", None),
        "ffn_up.weight": ("mlp.up_proj.weight", None),
        "ffn_down.weight": ("mlp.down_proj.weight", None),
        "attn_norm.weight": ("input_layernorm.weight", None),
        "ffn_norm.weight": ("post_attention_layernorm.weight", None),
    }
    if parts[2] not in per_layer:
        # rope_freqs, biases, experts, ...: nothing a plain Llama has
        raise ConvertError("tensor '%s' has no Llama equivalent" % gguf_name)
    name, perm = per_layer[parts[2]]
    return "model.layers.%d.%s" % (int(parts[1]), name), perm


def unpermute(w, n_head):
    """Inverse of llama.cpp's LlamaModel.permute:
        w.reshape(n_head, 2, rows // n_head // 2, *rest).swapaxes(1, 2).reshape(w.shape)
    which moves row (h, half, i) to (h, i, half). Going back gives HF's
    rotate_half layout again."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise ConvertError("cannot unpermute %d rows over %d heads" % (rows, n_head))
    return (w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:])
             .swapaxes(1, 2)
             .reshape(w.shape))


def module_order(name):
    """Sort key: embeddings, layers in order (attention, MLP, norms), final
    norm, LM head, the order in which transformers lists a Llama's state."""
    within = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
              "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
              "input_layernorm", "post_attention_layernorm"]
    if name == "model.embed_tokens.weight":
        return (0, 0, 0)
    if name.startswith("model.layers."):
        layer, rest = name[len("model.layers."):].split(".", 1)
        return (1, int(layer), within.index(rest.rsplit(".", 1)[0]))
    return (2, 0 if name == "model.norm.weight" else 1, 0)


def dequantize(t):
    """A GGUF tensor as float32, in numpy (row-major, HF) shape."""
    shape = tuple(int(d) for d in reversed(t.shape))
    w = quants.dequantize(t.data, t.tensor_type)
    w = np.asarray(w, dtype=np.float32)
    if w.size != int(np.prod(shape)):
        raise ConvertError("tensor '%s': %d values for shape %s" % (t.name, w.size, shape))
    return w.reshape(shape)


def to_bf16_bits(w):
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even;
    NaN stays a quiet NaN."""
    u = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)
    bits = ((u + (((u >> 16) & 1) + 0x7FFF)) >> 16).astype(np.uint16)
    nan = np.isnan(w)
    if nan.any():
        bits[nan] = ((u[nan] >> 16) | 0x0040).astype(np.uint16)
    return bits


def write_safetensors(path, reader, hp, dtype):
    """Streams one tensor at a time: the header is built from the GGUF shapes
    before any tensor is dequantized."""
    elem = {"F32": 4, "BF16": 2}[dtype]
    plan = []
    for t in reader.tensors:
        name, perm = hf_name(t.name)
        shape = [int(d) for d in reversed(t.shape)]
        plan.append((name, perm, shape, t))
    plan.sort(key=lambda x: module_order(x[0]))
    names = [p[0] for p in plan]
    if len(set(names)) != len(names):
        raise ConvertError("duplicate tensor names")

    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, _, shape, _ in plan:
        n = elem * int(np.prod(shape))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * (-len(hbytes) % 8)

    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for name, perm, shape, t in plan:
            w = dequantize(t)
            if perm == "q":
                w = unpermute(w, hp["n_head"])
            elif perm == "k":
                w = unpermute(w, hp["n_head_kv"])
            if dtype == "BF16":
                w = to_bf16_bits(w)
            data = np.ascontiguousarray(w).astype("<" + w.dtype.str[1:], copy=False).tobytes()
            if len(data) != header[name]["data_offsets"][1] - header[name]["data_offsets"][0]:
                raise ConvertError("tensor '%s': size mismatch" % name)
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return names


# ---------------------------------------------------------------- tokenizer

# tokenizer.ggml.pre -> Hugging Face pre_tokenizer. llama.cpp's llama-vocab.cpp
# gives "smollm" (like "starcoder") the regexes "\p{N}" then GPT-2's, which is
# tokenizers' Digits(individual_digits) followed by ByteLevel(use_regex).
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
              "use_regex": True}
PRE_TOKENIZERS = {
    "smollm": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, BYTE_LEVEL]},
    "gpt-2": BYTE_LEVEL,
    "default": BYTE_LEVEL,
}
for _alias in ("starcoder", "refact", "codeshell"):
    PRE_TOKENIZERS[_alias] = PRE_TOKENIZERS["smollm"]

# llama_token_type
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED = 1, 2, 3, 4


def build_tokenizer(reader):
    model = field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise ConvertError("tokenizer model '%s' is not supported (only gpt2 byte-level BPE)" % model)
    pre = field(reader, "tokenizer.ggml.pre", "default", required=False)
    if pre not in PRE_TOKENIZERS:
        raise ConvertError("pre-tokenizer '%s' is not supported" % pre)
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = field(reader, "tokenizer.ggml.merges")
    if len(types) != len(tokens):
        raise ConvertError("%d token types for %d tokens" % (len(types), len(tokens)))
    vocab = {}
    for i, tok in enumerate(tokens):
        if tok in vocab:
            raise ConvertError("duplicate token %r (ids %d and %d)" % (tok, vocab[tok], i))
        vocab[tok] = i
    for m in merges:
        a, sep, b = m.partition(" ")
        if not sep or a not in vocab or b not in vocab or a + b not in vocab:
            raise ConvertError("bad merge %r" % m)

    added = []
    for i, (tok, ty) in enumerate(zip(tokens, types)):
        if ty in (TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNKNOWN):
            added.append({"id": i, "content": tok, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": ty == TOKEN_USER_DEFINED,
                          "special": ty != TOKEN_USER_DEFINED})
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": PRE_TOKENIZERS[pre],
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True,
                           "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True,
                    "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": list(merges)},
    }
    return tj, tokens, added


def special_ids(reader):
    ids = {}
    for key in ("bos", "eos", "unknown", "padding"):
        v = field(reader, "tokenizer.ggml.%s_token_id" % key, required=False)
        if v is not None:
            ids[key] = int(v)
    return ids


def build_tokenizer_config(reader, tokens, added, ids, n_ctx):
    def tok(key):
        return tokens[ids[key]] if key in ids else None
    cfg = {
        "add_bos_token": bool(field(reader, "tokenizer.ggml.add_bos_token", False, required=False)),
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                             "single_word", "special")} for a in added},
        "bos_token": tok("bos"),
        "clean_up_tokenization_spaces": False,
        "eos_token": tok("eos"),
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": n_ctx,
        "pad_token": tok("padding"),
        # not the original GPT2Tokenizer: transformers 5 builds that class's
        # pipeline itself (plain ByteLevel) and drops tokenizer.json's Digits
        # split; PreTrainedTokenizerFast uses tokenizer.json as it is.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": tok("unknown"),
        "vocab_size": len(tokens),
    }
    tmpl = field(reader, "tokenizer.chat_template", required=False)
    if tmpl is not None:
        cfg["chat_template"] = tmpl
    return {k: v for k, v in cfg.items() if v is not None}


# ---------------------------------------------------------------- config

def build_config(hp, ids, vocab_size, tied, torch_dtype):
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": ids.get("bos"),
        "eos_token_id": ids.get("eos"),
        "head_dim": hp["head_dim"],
        "hidden_act": "silu",
        "hidden_size": hp["n_embd"],
        "initializer_range": 0.02,
        "intermediate_size": hp["n_ff"],
        "max_position_embeddings": hp["n_ctx"],
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": hp["n_head"],
        "num_hidden_layers": hp["n_layer"],
        "num_key_value_heads": hp["n_head_kv"],
        "pad_token_id": ids.get("padding"),
        "pretraining_tp": 1,
        "rms_norm_eps": hp["eps"],
        "rope_scaling": None,
        "rope_theta": hp["rope_theta"],
        "tie_word_embeddings": tied,
        "torch_dtype": torch_dtype,
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    return cfg


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


# ---------------------------------------------------------------- main

OUTPUT_FILES = ("model.safetensors", "config.json", "generation_config.json",
                "tokenizer.json", "tokenizer_config.json")


def convert(gguf_path, out_dir, dtype, force):
    reader = gguf.GGUFReader(gguf_path)
    hp = read_hparams(reader)
    tj, tokens, added = build_tokenizer(reader)
    ids = special_ids(reader)
    names = {t.name for t in reader.tensors}
    tied = "output.weight" not in names
    emb = [t for t in reader.tensors if t.name == "token_embd.weight"]
    if not emb:
        raise ConvertError("no token_embd.weight")
    vocab_size = int(emb[0].shape[1])
    if vocab_size != len(tokens):
        raise ConvertError("embedding has %d rows, tokenizer %d tokens" % (vocab_size, len(tokens)))
    for i in range(hp["n_layer"]):
        for s in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                  "ffn_down", "attn_norm", "ffn_norm"):
            if "blk.%d.%s.weight" % (i, s) not in names:
                raise ConvertError("missing tensor blk.%d.%s.weight" % (i, s))

    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        if not force:
            raise ConvertError("'%s' exists (use --force to replace it)" % out_dir)
        if not os.path.isdir(out_dir) or os.path.islink(out_dir):
            raise ConvertError("'%s' is not a directory" % out_dir)
        # --force replaces a directory this script wrote, nothing else
        foreign = sorted(set(os.listdir(out_dir)) - set(OUTPUT_FILES))
        if foreign:
            raise ConvertError("'%s' holds '%s', which this script does not write; not replacing it"
                               % (out_dir, foreign[0]))
    tmp = out_dir + ".partial"
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)

    st_dtype = {"f32": "F32", "bf16": "BF16"}[dtype]
    torch_dtype = {"f32": "float32", "bf16": "bfloat16"}[dtype]
    write_safetensors(os.path.join(tmp, "model.safetensors"), reader, hp, st_dtype)
    write_json(os.path.join(tmp, "config.json"),
               build_config(hp, ids, vocab_size, tied, torch_dtype))
    gen = {"bos_token_id": ids.get("bos"), "eos_token_id": ids.get("eos"),
           "pad_token_id": ids.get("padding")}
    write_json(os.path.join(tmp, "generation_config.json"),
               {k: v for k, v in gen.items() if v is not None})
    write_json(os.path.join(tmp, "tokenizer.json"), tj)
    write_json(os.path.join(tmp, "tokenizer_config.json"),
               build_tokenizer_config(reader, tokens, added, ids, hp["n_ctx"]))

    if os.path.exists(out_dir):
        for entry in os.listdir(out_dir):
            os.unlink(os.path.join(out_dir, entry))
        os.rmdir(out_dir)
    os.rename(tmp, out_dir)
    return out_dir


def main(argv):
    ap = argparse.ArgumentParser(
        description="Convert a llama-architecture GGUF into a Hugging Face checkpoint directory.")
    ap.add_argument("gguf", help="input .gguf file")
    ap.add_argument("out", help="output directory (must not exist unless --force)")
    ap.add_argument("--dtype", choices=("f32", "bf16"), default="bf16",
                    help="safetensors dtype (default bf16)")
    ap.add_argument("-f", "--force", action="store_true", help="replace OUT")
    ap.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    args = ap.parse_args(argv)
    try:
        out = convert(args.gguf, args.out, args.dtype, args.force)
    except (ConvertError, OSError, ValueError) as e:
        sys.stderr.write("error: %s\n" % e)
        return 1
    if not args.quiet:
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
