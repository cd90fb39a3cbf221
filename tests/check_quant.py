#!/usr/bin/env python3
"""Independent check of an airllm-quant output (Python stdlib only).

Reads OUT_DIR/manifest.json, parses every unit file's container header by
formats/container.md (not through the C library), and for each quantized
tensor without double quantization: checks the byte layout of section 7.3
(codes, scales at align64, zero padding, stored_len), dequantizes it with the
codebooks of docs/quantization.md, and recomputes RMSE, max abs error and
relative Frobenius error against the source safetensors tensor in SRC_DIR.
They must match the manifest's figures (relative 1e-3). Double-quantized
tensors get the layout checks only (their absmax needs the dynamic map).

usage: check_quant.py OUT_DIR SRC_DIR      prints a summary, exits 1 on a mismatch
"""
import json
import math
import os
import struct
import sys

NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
       -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
       0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
       0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
       0.7229568362236023, 1.0]
FP4 = [0.0, 0.005208333333, 0.6666666667, 1.0, 0.3333333333, 0.5, 0.1666666667, 0.25,
       0.0, -0.005208333333, -0.6666666667, -1.0, -0.3333333333, -0.5, -0.1666666667, -0.25]
FP4 = [struct.unpack("<f", struct.pack("<f", v))[0] for v in FP4]
ENC = {2: "nf4", 3: "fp4", 4: "int8"}
DTYPE_BYTES = {"F32": 4, "BF16": 2, "F16": 2}
DTYPE_CODE = {11: "F32", 10: "BF16", 9: "F16"}


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def read_header(path):
    with open(path, "rb") as f:
        head = f.read(64)
        assert head[:8] == b"AIRLLMCT", path
        major, minor, count = struct.unpack_from("<HHI", head, 8)
        table = f.read(128 * count)
        header_bytes = struct.unpack_from("<Q", head, 24)[0]
        names = f.read(header_bytes - 64 - 128 * count)
    tensors = []
    for i in range(count):
        e = table[128 * i:128 * (i + 1)]
        noff, nlen, dtype, enc, ndim = struct.unpack_from("<QIHHI", e, 0)
        shape = struct.unpack_from("<8Q", e, 24)[:ndim]
        offset, stored, raw = struct.unpack_from("<QQQ", e, 88)
        params = struct.unpack_from("<4I", e, 112)
        tensors.append(dict(name=names[noff:noff + nlen].decode(), dtype=dtype, enc=enc,
                            shape=shape, offset=offset, stored=stored, raw=raw,
                            params=params))
    return (major, minor), tensors


def source_values(src_dir, name):
    files = [f for f in os.listdir(src_dir) if f.endswith(".safetensors")]
    for fn in sorted(files):
        with open(os.path.join(src_dir, fn), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
            if name not in hdr:
                continue
            t = hdr[name]
            b, e = t["data_offsets"]
            f.seek(8 + n + b)
            data = f.read(e - b)
            if t["dtype"] == "F32":
                return list(struct.unpack("<%df" % (len(data) // 4), data))
            if t["dtype"] == "BF16":
                u = struct.unpack("<%dH" % (len(data) // 2), data)
                return [struct.unpack("<f", struct.pack("<I", x << 16))[0] for x in u]
            if t["dtype"] == "F16":
                return list(struct.unpack("<%de" % (len(data) // 2), data))
    raise KeyError(name)


def align(x, a):
    return (x + a - 1) // a * a


def dequantize(t, blob):
    """The values of quantized tensor t (a read_header entry) of the unit
    file whose bytes are blob, as the runner's kernels decode them (float32
    products). Not for double-quantized tensors."""
    kind = ENC[t["enc"]]
    block, flags = t["params"][0], t["params"][1]
    assert not flags & 1, "double-quantized: %s" % t["name"]
    n = t["raw"] // DTYPE_BYTES[DTYPE_CODE[t["dtype"]]]
    nb = (n + block - 1) // block
    codes_len = n if kind == "int8" else (n + 1) // 2
    data = blob[t["offset"]:t["offset"] + t["stored"]]
    absmax = struct.unpack_from("<%df" % nb, data, align(codes_len, 64))
    out = []
    for i in range(n):
        a = absmax[i // block]
        if kind == "int8":
            q = data[i] - 256 if data[i] > 127 else data[i]
            out.append(f32(q * f32(a / 127.0)))
        else:
            byte = data[i // 2]
            code = byte >> 4 if i % 2 == 0 else byte & 15
            out.append(f32((NF4 if kind == "nf4" else FP4)[code] * a))
    return out


def main():
    out_dir, src_dir = sys.argv[1], sys.argv[2]
    man = json.load(open(os.path.join(out_dir, "manifest.json")))
    by_name = {t["name"]: t for t in man["tensors"]}
    assert man["format_version"] == "1.2", man["format_version"]
    checked = layout_only = failures = 0
    for unit in man["units"]:
        if "file" not in unit:
            continue
        path = os.path.join(out_dir, unit["file"])
        (major, minor), tensors = read_header(path)
        quantized = [t for t in tensors if t["enc"] in ENC]
        if quantized and (major, minor) != (1, 2):
            print("FAIL %s: quantized tensors in a %d.%d file" % (path, major, minor))
            failures += 1
        with open(path, "rb") as f:
            blob = f.read()
        for t in quantized:
            kind = ENC[t["enc"]]
            block, flags = t["params"][0], t["params"][1]
            n = t["raw"] // DTYPE_BYTES[DTYPE_CODE[t["dtype"]]]
            nb = (n + block - 1) // block
            codes_len = n if kind == "int8" else (n + 1) // 2
            scales_off = align(codes_len, 64)
            if flags & 1:
                stored = align(scales_off + nb, 4) + 4 + 4 * ((nb + 255) // 256)
            else:
                stored = scales_off + 4 * nb
            data = blob[t["offset"]:t["offset"] + t["stored"]]
            m = by_name[t["name"]]
            if stored != t["stored"] or m["stored_bytes"] != stored or \
                    any(data[codes_len:scales_off]) or m["encoding"] != kind or \
                    m["quant"]["block_size"] != block:
                print("FAIL %s: layout (stored %d, expected %d)" % (t["name"], t["stored"], stored))
                failures += 1
                continue
            if flags & 1:
                layout_only += 1
                continue
            x = source_values(src_dir, t["name"])
            ys = dequantize(t, blob)
            se = sx = me = 0.0
            for i in range(n):
                d = x[i] - ys[i]
                se += d * d
                sx += x[i] * x[i]
                me = max(me, abs(d))
            rmse, rel = math.sqrt(se / n), (math.sqrt(se / sx) if sx else 0.0)
            q = m["quant"]
            for what, mine, theirs in (("rmse", rmse, q["rmse"]), ("max_abs_error", me, q["max_abs_error"]),
                                       ("rel_frobenius_error", rel, q["rel_frobenius_error"])):
                if abs(mine - theirs) > 1e-3 * abs(mine) + 1e-12:
                    print("FAIL %s: %s %.9g here, %.9g in the manifest" % (t["name"], what, mine, theirs))
                    failures += 1
            checked += 1
    print("check_quant: %d tensors recomputed, %d layout-only, %d failures" %
          (checked, layout_only, failures))
    sys.exit(1 if failures or checked + layout_only == 0 else 0)


if __name__ == "__main__":
    main()
