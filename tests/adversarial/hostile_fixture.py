#!/usr/bin/env python3
"""Builds the hostile inputs of tests/adversarial/hostile_*.sh.

    hostile_fixture.py ckpt SRC OUT [--f64 NAME] [--add NAME] [--flip NAME:OFFSET]
        copies the single-file checkpoint SRC (model.safetensors, config,
        tokenizer) to OUT; --f64 stores tensor NAME as F64 (same values),
        --add appends a small F32 tensor NAME (any characters), --flip
        changes one byte of NAME's data at OFFSET
    hostile_fixture.py setcfg DIR KEY=JSON...
        sets keys of DIR/config.json in a converted directory and updates the
        manifest's size and SHA-256 of it, so that only the values differ
    hostile_fixture.py tie DIR NAME
        points the manifest's tied LM head at tensor NAME
    hostile_fixture.py swap DIR FILE_A FILE_B
        swaps the files (with their sizes and digests) of two units

Standard library only.
"""
import hashlib
import json
import os
import shutil
import struct
import sys


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    meta = hdr.pop("__metadata__", None)
    tensors = []
    for name, t in sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = t["data_offsets"]
        tensors.append([name, t["dtype"], t["shape"], bytearray(data[b:e])])
    return meta, tensors


def write_st(path, meta, tensors):
    hdr, off = {}, 0
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dtype, shape, data in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for t in tensors:
            f.write(t[3])


def ckpt(args):
    src, out = args[0], args[1]
    os.makedirs(out)
    for n in os.listdir(src):
        if n != "model.safetensors":
            shutil.copy(os.path.join(src, n), out)
    meta, tensors = read_st(os.path.join(src, "model.safetensors"))
    opts = args[2:]
    for k in range(0, len(opts), 2):
        flag, val = opts[k], opts[k + 1]
        if flag == "--f64":
            t = next(t for t in tensors if t[0] == val)
            assert t[1] == "F32"
            vals = struct.unpack("<%df" % (len(t[3]) // 4), t[3])
            t[1], t[3] = "F64", bytearray(struct.pack("<%dd" % len(vals), *vals))
        elif flag == "--add":
            tensors.append([val, "F32", [4], bytearray(16)])
        elif flag == "--flip":
            name, off = val.rsplit(":", 1)
            t = next(t for t in tensors if t[0] == name)
            t[3][int(off)] ^= 0x5A
        else:
            sys.exit("unknown option " + flag)
    write_st(os.path.join(out, "model.safetensors"), meta, tensors)


def load_manifest(d):
    with open(os.path.join(d, "manifest.json")) as f:
        return json.load(f)


def save_manifest(d, m):
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(m, f, indent=1)


def setcfg(args):
    d = args[0]
    p = os.path.join(d, "config.json")
    with open(p) as f:
        cfg = json.load(f)
    for kv in args[1:]:
        k, v = kv.split("=", 1)
        cfg[k] = json.loads(v)
    data = json.dumps(cfg, indent=1).encode()
    with open(p, "wb") as f:
        f.write(data)
    m = load_manifest(d)
    for e in m["files"]:
        if e["file"] == "config.json":
            e["size"] = len(data)
            e["sha256"] = hashlib.sha256(data).hexdigest()
    save_manifest(d, m)


def tie(args):
    m = load_manifest(args[0])
    for u in m["units"]:
        if u["kind"] == "lm_head":
            u["tied_to"] = args[1]
    save_manifest(args[0], m)


def swap(args):
    m = load_manifest(args[0])
    a = next(u for u in m["units"] if u.get("file") == args[1])
    b = next(u for u in m["units"] if u.get("file") == args[2])
    for k in ("file", "size", "sha256"):
        a[k], b[k] = b[k], a[k]
    save_manifest(args[0], m)


if __name__ == "__main__":
    {"ckpt": ckpt, "setcfg": setcfg, "tie": tie, "swap": swap}[sys.argv[1]](sys.argv[2:])
