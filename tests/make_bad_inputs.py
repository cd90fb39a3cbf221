#!/usr/bin/env python3
"""Writes small Hugging Face checkpoint directories for the CLI bad-input test.

usage: make_bad_inputs.py OUT_DIR

Each directory under OUT_DIR is a tiny Llama-style checkpoint (2 layers,
hidden 8, F32) with exactly one defect, plus `expect.txt`: one substring per
line, each of which the tool's error message must contain (compared without
regard to case). The first line names the offending file (or tensor); a
second line, where present, is a word about the problem. Directory names
echo their defect, so a checker must first replace the checkpoint
directory's path in the message with "<dir>" (cli_bad_input.sh does), or
any message that merely names a path would match; "<dir>" as an expected
line thus means "names a path inside the checkpoint directory".
Directories whose names start with "good" have no defect and no expect.txt.

Python standard library only; the output is deterministic (fixed seed, fixed
JSON formatting), so reruns produce byte-identical files.
"""
import json
import os
import pickle
import random
import shutil
import struct
import sys

LAYERS = 2
HIDDEN = 8
INTER = 16
VOCAB = 32

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "num_hidden_layers": LAYERS,
    "hidden_size": HIDDEN,
    "intermediate_size": INTER,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "vocab_size": VOCAB,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0,
    "torch_dtype": "float32",
}

SINGLE = "model.safetensors"
SHARD1 = "model-00001-of-00002.safetensors"
SHARD2 = "model-00002-of-00002.safetensors"
INDEX = "model.safetensors.index.json"


def tensor_specs():
    """(name, shape) in the order the checkpoint stores them."""
    specs = [("model.embed_tokens.weight", [VOCAB, HIDDEN])]
    for i in range(LAYERS):
        p = "model.layers.%d." % i
        specs += [
            (p + "input_layernorm.weight", [HIDDEN]),
            (p + "self_attn.q_proj.weight", [HIDDEN, HIDDEN]),
            (p + "self_attn.k_proj.weight", [HIDDEN, HIDDEN]),
            (p + "self_attn.v_proj.weight", [HIDDEN, HIDDEN]),
            (p + "self_attn.o_proj.weight", [HIDDEN, HIDDEN]),
            (p + "post_attention_layernorm.weight", [HIDDEN]),
            (p + "mlp.gate_proj.weight", [INTER, HIDDEN]),
            (p + "mlp.up_proj.weight", [INTER, HIDDEN]),
            (p + "mlp.down_proj.weight", [HIDDEN, INTER]),
        ]
    specs += [("model.norm.weight", [HIDDEN]), ("lm_head.weight", [VOCAB, HIDDEN])]
    return specs


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def make_tensors():
    """[(name, shape, bytes)] with fixed pseudo-random float32 values."""
    rng = random.Random(20240601)
    out = []
    for name, shape in tensor_specs():
        vals = [rng.uniform(-1.0, 1.0) for _ in range(numel(shape))]
        out.append((name, shape, struct.pack("<%df" % len(vals), *vals)))
    return out


def header_entries(tensors):
    """[(name, entry dict)] with contiguous offsets, and the data bytes."""
    entries, data, pos = [], b"", 0
    for name, shape, raw in tensors:
        entries.append((name, {"dtype": "F32", "shape": list(shape),
                               "data_offsets": [pos, pos + len(raw)]}))
        data += raw
        pos += len(raw)
    return entries, data


def encode_header(entries, metadata={"format": "pt"}):
    """JSON text for (name, entry) pairs; built by hand so that duplicate
    names can be written. Padded with spaces to a multiple of 8 bytes, as
    the safetensors writer does."""
    parts = []
    if metadata is not None:
        parts.append('"__metadata__":' + json.dumps(metadata, separators=(",", ":")))
    for name, entry in entries:
        parts.append(json.dumps(name) + ":" + json.dumps(entry, separators=(",", ":")))
    text = ("{" + ",".join(parts) + "}").encode("utf-8")
    return text + b" " * (-len(text) % 8)


def st_bytes(header, data):
    return struct.pack("<Q", len(header)) + header + data


def write(path, raw):
    with open(path, "wb") as f:
        f.write(raw)


def write_config(d, **changes):
    cfg = dict(CONFIG)
    cfg.update(changes)
    write(os.path.join(d, "config.json"), (json.dumps(cfg, indent=2) + "\n").encode())


def write_expect(d, *lines):
    write(os.path.join(d, "expect.txt"), ("\n".join(lines) + "\n").encode())


def write_single(d, tensors):
    entries, data = header_entries(tensors)
    write(os.path.join(d, SINGLE), st_bytes(encode_header(entries), data))


def shard_split(tensors):
    """Layer 0 and the embedding in shard 1, the rest in shard 2."""
    first = [t for t in tensors
             if t[0].startswith("model.embed_tokens") or t[0].startswith("model.layers.0.")]
    second = [t for t in tensors if t not in first]
    return first, second


def write_sharded(d, tensors, weight_map_override=None, skip_shard=None):
    first, second = shard_split(tensors)
    weight_map = {}
    total = 0
    for fname, part in ((SHARD1, first), (SHARD2, second)):
        for name, _, raw in part:
            weight_map[name] = fname
            total += len(raw)
        if fname != skip_shard:
            write_single_named(d, fname, part)
    index = {"metadata": {"total_size": total},
             "weight_map": weight_map if weight_map_override is None else weight_map_override}
    write(os.path.join(d, INDEX), (json.dumps(index, indent=2) + "\n").encode())
    return weight_map


def write_single_named(d, fname, part):
    entries, data = header_entries(part)
    write(os.path.join(d, fname), st_bytes(encode_header(entries), data))


# ---------------------------------------------------------------- defects

def entries_with(tensors, fn):
    """Header entries and data with fn(entries) applied to the entries."""
    entries, data = header_entries(tensors)
    fn(entries)
    return entries, data


def set_field(index, key, value):
    def fn(entries):
        entries[index][1][key] = value
    return fn


def drop_field(index, key):
    def fn(entries):
        del entries[index][1][key]
    return fn


# Index of a mid-file tensor (model.layers.0.self_attn.q_proj.weight, [8, 8]).
MID = 2


def header_defects(tensors):
    """name -> (header bytes, data bytes, expected problem word)."""
    entries, data = header_entries(tensors)
    good_hdr = encode_header(entries)
    d = {}

    def mutate(name, fn, word, extra_data=b""):
        e, dat = entries_with(tensors, fn)
        d[name] = (encode_header(e), dat + extra_data, word)

    def raw(name, hdr, word, dat=data):
        hdr = hdr + b" " * (-len(hdr) % 8)
        d[name] = (hdr, dat, word)

    raw("hdr_empty", b"", "empty")
    raw("hdr_json_array", b"[" + good_hdr.rstrip()[1:-1] + b"]", "not a JSON object")
    raw("hdr_json_number", b"42", "not a JSON object")
    raw("hdr_unparsable", good_hdr.rstrip()[:-1], "not valid JSON")
    raw("hdr_trailing_junk", good_hdr.rstrip() + b"x", "after the JSON object")
    raw("hdr_not_utf8", good_hdr.replace(b'"pt"', b'"p\xff"'), "UTF-8")
    raw("hdr_overlong_utf8", good_hdr.replace(b'"pt"', b'"\xc0\xaf"'), "UTF-8")
    raw("hdr_surrogate_utf8", good_hdr.replace(b'"pt"', b'"\xed\xa0\x80"'), "UTF-8")

    def dup(entries):
        # Same shape as the tensor it copies, so only the name is wrong.
        entries[1] = (entries[6][0], entries[1][1])
    mutate("hdr_duplicate_name", dup, "duplicate")
    mutate("hdr_unknown_dtype", set_field(MID, "dtype", "F17"), "unknown dtype")
    mutate("hdr_size_mismatch", set_field(MID, "shape", [8, 7]), "needs")
    mutate("hdr_shape_overflow", set_field(MID, "shape", [4294967296, 4294967296, 16]),
           "overflows")
    mutate("hdr_negative_dim", set_field(MID, "shape", [-8, -8]), "negative")
    mutate("hdr_fractional_dim", set_field(MID, "shape", [8, 8.5]), "not an integer")
    mutate("hdr_float_dim", set_field(MID, "shape", [8.0, 8]), "not an integer")
    mutate("hdr_huge_dim", set_field(MID, "shape", [2 ** 60, 8]), "too large")
    mutate("hdr_too_many_dims", set_field(MID, "shape", [1] * 7 + [8, 8]), "dimensions")
    mutate("hdr_dtype_not_string", set_field(MID, "dtype", 32), "not a string")
    mutate("hdr_shape_not_array", set_field(MID, "shape", 64), "not an array")
    mutate("hdr_three_offsets", set_field(MID, "data_offsets", [0, 1, 2]), "not 2")

    def shift(index, by):
        def fn(entries):
            off = entries[index][1]["data_offsets"]
            entries[index][1]["data_offsets"] = [off[0] + by, off[1] + by]
        return fn
    mutate("hdr_overlap", shift(MID, -4), "overlap")
    # Shift the last tensor and pad the data so only a gap is wrong.
    last = len(tensors) - 1
    e, dat = entries_with(tensors, shift(last, 4))
    lm_len = len(tensors[last][2])
    d["hdr_gap"] = (encode_header(e), dat[:-lm_len] + b"\0" * 4 + dat[-lm_len:], "gap")

    def swap(entries):
        off = entries[MID][1]["data_offsets"]
        entries[MID][1]["data_offsets"] = [off[1], off[0]]
    mutate("hdr_begin_gt_end", swap, "begin")
    mutate("hdr_end_too_large", set_field(last, "data_offsets",
                                          [entries[last][1]["data_offsets"][0], 2 ** 60]),
           "too large")

    def grow_last(entries):
        off = entries[last][1]["data_offsets"]
        entries[last][1]["shape"] = [VOCAB, 1000]
        entries[last][1]["data_offsets"] = [off[0], off[0] + VOCAB * 1000 * 4]
    mutate("hdr_end_past_eof", grow_last, "truncated")
    d["hdr_truncated_data"] = (good_hdr, data[:-10], "truncated")
    d["hdr_trailing_garbage"] = (good_hdr, data + b"\0" * 16, "trailing garbage")
    mutate("hdr_negative_offset", set_field(0, "data_offsets", [-1, VOCAB * HIDDEN * 4 - 1]),
           "negative")

    e, dat = header_entries(tensors)
    d["hdr_metadata_not_string"] = (encode_header(e, metadata={"format": 1}), dat,
                                    "not a string")
    d["hdr_metadata_not_object"] = (encode_header(e, metadata=["pt"]), dat, "not an object")
    mutate("hdr_missing_dtype", drop_field(MID, "dtype"), "missing")
    mutate("hdr_missing_shape", drop_field(MID, "shape"), "missing")
    mutate("hdr_missing_data_offsets", drop_field(MID, "data_offsets"), "missing")
    mutate("hdr_extra_key", set_field(MID, "foo", "bar"), "unexpected key")

    def empty_name(entries):
        entries[MID] = ("", entries[MID][1])
    mutate("hdr_empty_name", empty_name, "empty tensor name")

    def nul_name(entries):
        entries[MID] = (entries[MID][0] + "\0x", entries[MID][1])
    mutate("hdr_nul_in_name", nul_name, "NUL")

    def long_name(entries):
        entries[MID] = ("n" * 1025, entries[MID][1])
    mutate("hdr_name_too_long", long_name, "longer than")

    def not_object(entries):
        entries[MID] = (entries[MID][0], [1, 2, 3])
    mutate("hdr_entry_not_object", not_object, "not an object")
    return d


def make_all(out):
    tensors = make_tensors()
    os.makedirs(out, exist_ok=True)

    def new(name):
        d = os.path.join(out, name)
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        return d

    d = new("good")
    write_config(d)
    write_single(d, tensors)

    d = new("good_sharded")
    write_config(d)
    write_sharded(d, tensors)

    # Malformed safetensors headers, each in a real single-file checkpoint.
    for name, (hdr, data, word) in sorted(header_defects(tensors).items()):
        d = new(name)
        write_config(d)
        write(os.path.join(d, SINGLE), st_bytes(hdr, data))
        write_expect(d, SINGLE, word)

    # Files too short for the length field, or whose length runs past EOF.
    d = new("hdr_file_too_short")
    write_config(d)
    write(os.path.join(d, SINGLE), b"\x10\0\0\0\0")
    write_expect(d, SINGLE, "too short")

    d = new("hdr_length_past_eof")
    write_config(d)
    entries, data = header_entries(tensors)
    raw = st_bytes(encode_header(entries), data)
    write(os.path.join(d, SINGLE), struct.pack("<Q", 1234567890) + raw[8:300])
    write_expect(d, SINGLE, "exceeds the file")

    d = new("hdr_header_cut")  # the file ends inside the JSON header
    write_config(d)
    write(os.path.join(d, SINGLE), raw[:100])
    write_expect(d, SINGLE, "exceeds the file")

    # Over the 100 MB header limit in a file that is big enough to hold it.
    # The file is sparse (a seek past the end), so it costs no disk blocks.
    d = new("hdr_length_over_limit")
    write_config(d)
    big = 100 * 1000 * 1000 + 8
    with open(os.path.join(d, SINGLE), "wb") as f:
        f.write(struct.pack("<Q", big) + b"{")
        f.seek(8 + big + 16 - 1)
        f.write(b"}")
    write_expect(d, SINGLE, "exceeds the limit")

    # A header defect in the second shard of an indexed checkpoint.
    d = new("shard_trailing_garbage")
    write_config(d)
    write_sharded(d, tensors)
    with open(os.path.join(d, SHARD2), "ab") as f:
        f.write(b"\0" * 8)
    write_expect(d, SHARD2, "trailing garbage")

    # config.json problems.
    d = new("config_missing")
    write_single(d, tensors)
    write_expect(d, "config.json")

    d = new("config_not_json")
    write(os.path.join(d, "config.json"), b'{"architectures": ["LlamaForCausalLM"], "model_type": ')
    write_single(d, tensors)
    write_expect(d, "config.json")

    d = new("config_not_object")
    write(os.path.join(d, "config.json"), b'["LlamaForCausalLM"]\n')
    write_single(d, tensors)
    write_expect(d, "config.json")

    d = new("config_layers_mismatch")  # config says 3 layers, tensors have 2
    write_config(d, num_hidden_layers=3)
    write_single(d, tensors)
    write_expect(d, "layers")

    # Index problems.
    d = new("index_missing_shard")
    write_config(d)
    write_sharded(d, tensors, skip_shard=SHARD2)
    write_expect(d, SHARD2)

    d = new("index_tensor_not_in_shard")  # index sends a shard-1 tensor to shard 2
    write_config(d)
    first, _ = shard_split(tensors)
    moved = first[-1][0]
    wm = {}
    for part_name, part in zip((SHARD1, SHARD2), shard_split(tensors)):
        for name, _, _ in part:
            wm[name] = part_name
    wm[moved] = SHARD2
    write_sharded(d, tensors, weight_map_override=wm)
    write_expect(d, moved)

    d = new("index_weight_map_not_object")
    write_config(d)
    write_sharded(d, tensors, weight_map_override=[SHARD1, SHARD2])
    write_expect(d, INDEX)

    d = new("index_not_json")
    write_config(d)
    write_sharded(d, tensors)
    write(os.path.join(d, INDEX), b'{"metadata": {}, "weight_map": {')
    write_expect(d, INDEX)

    # PyTorch pickle only: loading it could run code, so it must be refused.
    d = new("pickle_only")
    write_config(d)
    write(os.path.join(d, "pytorch_model.bin"),
          pickle.dumps({"model.norm.weight": [0.0] * HIDDEN}, protocol=2))
    write_expect(d, "pytorch_model.bin", "pickle")

    # Config but no weights at all, and an empty directory.
    d = new("no_weights")
    write_config(d)
    write_expect(d, "safetensors")

    d = new("no_model")
    write_expect(d, "<dir>")

    check_good(os.path.join(out, "good"), tensors)
    check_good(os.path.join(out, "good_sharded"), tensors)


# ----------------------------------------------------------- self-check

def read_st(path):
    """A strict, independent reader: returns {name: (dtype, shape, bytes)}."""
    with open(path, "rb") as f:
        raw = f.read()
    assert len(raw) >= 8, path
    n = struct.unpack("<Q", raw[:8])[0]
    assert 8 + n <= len(raw), path
    text = raw[8:8 + n].decode("utf-8")
    assert text.startswith("{") and text.rstrip(" ").endswith("}"), path
    pairs = json.loads(text, object_pairs_hook=lambda p: p)
    names = [k for k, _ in pairs]
    assert len(names) == len(set(names)), "duplicate names in " + path
    data = raw[8 + n:]
    out, spans = {}, []
    for name, entry in pairs:
        entry = dict(entry)
        if name == "__metadata__":
            assert all(isinstance(v, str) for v in entry.values()), path
            continue
        assert sorted(entry) == ["data_offsets", "dtype", "shape"], (path, name)
        assert entry["dtype"] == "F32", (path, name)
        b, e = entry["data_offsets"]
        assert e - b == 4 * numel(entry["shape"]), (path, name)
        spans.append((b, e))
        out[name] = (entry["dtype"], entry["shape"], data[b:e])
    pos = 0
    for b, e in sorted(spans):
        assert b == pos, path
        pos = e
    assert pos == len(data), path
    return out


def check_good(d, tensors):
    """Reads the checkpoint back and compares it with what was meant."""
    cfg = json.load(open(os.path.join(d, "config.json")))
    assert cfg["num_hidden_layers"] == LAYERS
    if os.path.exists(os.path.join(d, INDEX)):
        index = json.load(open(os.path.join(d, INDEX)))
        got = {}
        for shard in sorted(set(index["weight_map"].values())):
            part = read_st(os.path.join(d, shard))
            for name in part:
                assert index["weight_map"][name] == shard, name
            got.update(part)
        assert set(got) == set(index["weight_map"])
    else:
        got = read_st(os.path.join(d, SINGLE))
    assert len(got) == len(tensors) == 3 + 9 * LAYERS
    for name, shape, raw in tensors:
        assert got[name] == ("F32", shape, raw), name


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: make_bad_inputs.py OUT_DIR\n")
        return 2
    make_all(sys.argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
