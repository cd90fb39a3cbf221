#!/usr/bin/env python3
"""Writes a runnable Qwen2 checkpoint made of very many tiny tensors.

It exists to measure how the tools scale with the number of tensors rather
than with their bytes: hidden size 8, 2 heads, vocabulary 16, and as many
layers (12 tensors each) as it takes to reach --tensors. Sharded with an
index (--shards K, default 2) so that index planning is exercised too;
--shards 1 writes a single model.safetensors.

    make_many_tensors.py --tensors N --out DIR [--shards K]

Values are a fixed pattern of small float32s (the runner gives finite
logits). Standard library only. Exit status: 0 ok, 1 failure, 2 usage.
"""

import argparse
import json
import os
import struct
import sys

HIDDEN, INTER, HEADS, VOCAB = 8, 8, 2, 16
PER_LAYER = 12
MAX_LAYERS = 100000  # airllm-run's limit on num_hidden_layers


def layer_tensors(i):
    p = f"model.layers.{i}."
    kv = HIDDEN  # 2 kv heads of head_dim 4
    return [
        (p + "input_layernorm.weight", [HIDDEN]),
        (p + "self_attn.q_proj.weight", [HIDDEN, HIDDEN]),
        (p + "self_attn.q_proj.bias", [HIDDEN]),
        (p + "self_attn.k_proj.weight", [kv, HIDDEN]),
        (p + "self_attn.k_proj.bias", [kv]),
        (p + "self_attn.v_proj.weight", [kv, HIDDEN]),
        (p + "self_attn.v_proj.bias", [kv]),
        (p + "self_attn.o_proj.weight", [HIDDEN, HIDDEN]),
        (p + "post_attention_layernorm.weight", [HIDDEN]),
        (p + "mlp.gate_proj.weight", [INTER, HIDDEN]),
        (p + "mlp.up_proj.weight", [INTER, HIDDEN]),
        (p + "mlp.down_proj.weight", [HIDDEN, INTER]),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tensors", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shards", type=int, default=2)
    a = ap.parse_args()
    layers = max(1, (a.tensors - 3) // PER_LAYER)
    if layers > MAX_LAYERS or a.shards < 1:
        print(f"--tensors {a.tensors} needs {layers} layers (at most {MAX_LAYERS})",
              file=sys.stderr)
        return 2
    tensors = [("model.embed_tokens.weight", [VOCAB, HIDDEN])]
    for i in range(layers):
        tensors += layer_tensors(i)
    tensors += [("model.norm.weight", [HIDDEN]), ("lm_head.weight", [VOCAB, HIDDEN])]

    # Small values, alternating sign, so that nothing overflows in the runner;
    # norms get 1.0 so that activations keep their scale.
    pattern = b"".join(struct.pack("<f", ((k % 7) - 3) * 0.01) for k in range(VOCAB * HIDDEN))
    ones = struct.pack("<f", 1.0) * HIDDEN
    os.makedirs(a.out, exist_ok=True)
    n_shards = min(a.shards, len(tensors))
    per = -(-len(tensors) // n_shards)
    weight_map = {}
    for s in range(n_shards):
        part = tensors[s * per:(s + 1) * per]
        name = ("model.safetensors" if n_shards == 1 and a.shards == 1
                else f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors")
        header, chunks, off = {}, [], 0
        for tname, shape in part:
            n = 1
            for d in shape:
                n *= d
            data = ones if tname.endswith("layernorm.weight") or tname == "model.norm.weight" \
                else pattern[:4 * n]
            header[tname] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(data)]}
            chunks.append(data)
            off += len(data)
            weight_map[tname] = name
        hb = json.dumps(header, separators=(",", ":")).encode()
        hb += b" " * (-len(hb) % 8)
        with open(os.path.join(a.out, name), "wb") as f:
            f.write(struct.pack("<Q", len(hb)))
            f.write(hb)
            f.write(b"".join(chunks))
    if not (n_shards == 1 and a.shards == 1):
        total = sum(os.path.getsize(os.path.join(a.out, f)) for f in set(weight_map.values()))
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
    cfg = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "hidden_size": HIDDEN, "intermediate_size": INTER, "num_hidden_layers": layers,
        "num_attention_heads": HEADS, "num_key_value_heads": HEADS, "vocab_size": VOCAB,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    print(f"{a.out}: {len(tensors)} tensors, {layers} layers, {n_shards} shard(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
