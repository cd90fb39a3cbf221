#!/usr/bin/env python3
"""Writes a Llama-shaped safetensors checkpoint of any size, fast, for the
script tests: weights are random bytes (split and verify copy bytes, they do
not interpret them), drawn from a seeded pool so the output is deterministic.

Each shard's tensors are ordered as the safetensors library orders them: by
dtype size, largest first, then by name. With --norm-dtype F32 and --dtype
BF16 that puts the norms of every layer before any weight, so every layer of
the shard is open at once while it is converted.

usage: make_llama_checkpoint.py OUT_DIR [--hidden N] [--intermediate N]
       [--layers N] [--vocab N] [--shards K] [--dtype D] [--norm-dtype D] [--seed S]
       [--finite]

--finite draws every value from [-0.1, 0.1) (F32 or BF16 only) instead of
random bytes, so that airllm-run computes finite logits on the checkpoint.
"""
import argparse
import json
import os
import random
import struct

SIZE = {"F32": 4, "F16": 2, "BF16": 2}


def layer_tensors(l, h, i, dtype, norm_dtype):
    p = f"model.layers.{l}."
    return ([(p + "input_layernorm.weight", norm_dtype, [h]),
             (p + "post_attention_layernorm.weight", norm_dtype, [h])] +
            [(p + f"self_attn.{x}_proj.weight", dtype, [h, h]) for x in "qkvo"] +
            [(p + "mlp.gate_proj.weight", dtype, [i, h]), (p + "mlp.up_proj.weight", dtype, [i, h]),
             (p + "mlp.down_proj.weight", dtype, [h, i])])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--intermediate", type=int, default=160)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=96)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--dtype", default="F32", choices=sorted(SIZE))
    ap.add_argument("--norm-dtype", default=None, choices=sorted(SIZE))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--finite", action="store_true")
    a = ap.parse_args()
    if a.finite and {a.dtype, a.norm_dtype or a.dtype} - {"F32", "BF16"}:
        ap.error("--finite takes F32 or BF16")
    h, i, L, v = a.hidden, a.intermediate, a.layers, a.vocab
    norm_dtype = a.norm_dtype or a.dtype
    units = [[("model.embed_tokens.weight", a.dtype, [v, h])]]
    units += [layer_tensors(l, h, i, a.dtype, norm_dtype) for l in range(L)]
    units += [[("model.norm.weight", norm_dtype, [h]), ("lm_head.weight", a.dtype, [v, h])]]
    # Units go to shards in module order, as transformers shards a model.
    per = -(-len(units) // a.shards)
    shards = [[t for u in units[k:k + per] for t in u] for k in range(0, len(units), per)]
    os.makedirs(a.out)
    rng = random.Random(a.seed)
    if a.finite:
        # F32 values; a BF16 tensor takes the high halves of a slice that
        # starts on a 4-byte boundary (little endian: bytes 2-3 of each).
        vals = struct.pack("<%df" % (1 << 18), *(rng.uniform(-0.1, 0.1) for _ in range(1 << 18)))
        pool = vals if a.dtype == "F32" else b"".join(vals[k + 2:k + 4] for k in range(0, len(vals), 4))
        pool_f32 = vals
    else:
        pool = rng.randbytes(1 << 20)
    weight_map = {}
    for k, group in enumerate(shards):
        name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        group.sort(key=lambda t: (-SIZE[t[1]], t[0]))
        header, off = {}, 0
        for t, dt, shape in group:
            n = SIZE[dt]
            for d in shape:
                n *= d
            header[t] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
            off += n
            weight_map[t] = name
        hdr = json.dumps(header, separators=(",", ":")).encode()
        hdr += b" " * (-len(hdr) % 8)
        with open(os.path.join(a.out, name), "wb") as f:
            f.write(struct.pack("<Q", len(hdr)) + hdr)
            if a.finite:
                # Tensor by tensor, each from its own dtype's pool.
                for t, dt, shape in group:
                    src = pool_f32 if dt == "F32" else pool
                    left = header[t]["data_offsets"][1] - header[t]["data_offsets"][0]
                    while left:
                        n = min(left, len(src))
                        start = rng.randrange(len(src) - n + 1)
                        start -= start % SIZE[dt]
                        f.write(src[start:start + n])
                        left -= n
                continue
            left = off
            while left:
                n = min(left, len(pool))
                start = rng.randrange(len(pool) - n + 1)
                f.write(pool[start:start + n])
                left -= n
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                   "hidden_size": h, "intermediate_size": i, "num_hidden_layers": L,
                   "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": v,
                   "tie_word_embeddings": False}, f)


if __name__ == "__main__":
    main()
