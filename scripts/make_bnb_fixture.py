#!/usr/bin/env python3
"""Writes tests/data/bnb_quant_fixture.json: what bitsandbytes itself
produces for a fixed float32 input, so tests/test_quant.c can check that
lib/airllm_quant.c is bit-compatible with it.

    make_bnb_fixture.py [--out tests/data/bnb_quant_fixture.json]

Needs torch and bitsandbytes (CPU path; no GPU is used or needed). Keep them
out of the repository, e.g.

    python3 -m venv /tmp/bnbvenv
    /tmp/bnbvenv/bin/pip install torch bitsandbytes numpy
    /tmp/bnbvenv/bin/python scripts/make_bnb_fixture.py

Every code and absmax in the fixture comes from calling bitsandbytes, never
from a re-statement of its algorithm:

  quant4    bitsandbytes.functional.quantize_4bit(A, blocksize, quant_type)
            (on CPU this runs bitsandbytes' "default" torch kernel)
  quant4_dq the same with compress_statistics=True: qabsmax, state2.absmax,
            offset; "absmax" is the uncompressed absmax of the same call
  dq_large  quantize_4bit(compress_statistics=False/True) on a 64000-value
            input; only the absmax vectors are stored (the double quant is a
            function of them alone)
  dequant4  dequantize_4bit of a compressed nf4 and a plain fp4 tensor
  dynamic8  quantize_blockwise(A, blocksize=256) with the default dynamic map:
            "lut" is bitsandbytes' native CPU kernel (libbitsandbytes_cpu,
            65536-bin lookup table), "nearest" the same op redispatched to
            bitsandbytes' default torch kernel (exact nearest code)
  int8      int8_vectorwise_quant on the input viewed as (n / block, block):
            bitsandbytes' symmetric round(x * 127 / absmax) per row, the
            same definition as our int8 blocks. (bitsandbytes' *blockwise*
            8-bit quantization uses the dynamic map, not linear 127 scaling.)

Floats are stored as hex of their little-endian bytes, so nothing is lost.
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import bitsandbytes
import bitsandbytes.functional as F

N = 4096


def hexf(a):
    return np.ascontiguousarray(np.asarray(a, dtype="<f4")).tobytes().hex()


def hexu8(a):
    return np.ascontiguousarray(np.asarray(a, dtype=np.uint8)).tobytes().hex()


def hexi8(a):
    return np.ascontiguousarray(np.asarray(a, dtype=np.int8)).tobytes().hex()


def make_input():
    """4096 float32 values; with block size 64, block b is x[64b : 64b+64].
    Most blocks are Gaussian with a per-block scale over 8 decades; some are
    crafted so that scaled values land exactly on codebook midpoints (ties),
    zeros, signed zeros, subnormals and huge magnitudes."""
    g = torch.Generator().manual_seed(20240611)
    x = torch.randn(N, generator=g, dtype=torch.float32)
    scale = 10.0 ** (torch.rand(N // 64, generator=g) * 8 - 6)
    x = (x.view(-1, 64) * scale.view(-1, 1).float()).view(-1)
    x[::37] = 0.0  # exact zeros sprinkled everywhere
    x = x.numpy().copy()

    def blk(b):
        return slice(64 * b, 64 * b + 64)

    nf4 = F.get_4bit_type("nf4", device="cpu").numpy()
    fp4s = np.sort(F.get_4bit_type("fp4", device="cpu").numpy())
    mid_nf4 = ((nf4[:-1] + nf4[1:]) / np.float32(2)).astype(np.float32)
    mid_fp4 = ((fp4s[:-1] + fp4s[1:]) / np.float32(2)).astype(np.float32)
    x[blk(3)] = 0.0  # an all-zero block
    # absmax 1: scaled value == x exactly, so x on a midpoint is a tie
    t = np.concatenate([[1.0], mid_nf4, -mid_nf4, mid_fp4, -mid_fp4])
    x[blk(7)] = np.resize(t, 64)
    # absmax 0.5 (a power of two): x * (1/0.5) is exact, ties again
    t = np.concatenate([[-0.5], mid_nf4 / 2, mid_fp4 / 2, -mid_fp4 / 2, -mid_nf4 / 2])
    x[blk(8)] = np.resize(t, 64)
    # absmax 127: int8 scale 127/127 == 1, so k + 0.5 is a round-half-even tie
    t = np.concatenate([[127.0], np.arange(-20, 21) + 0.5, [-126.5, 126.5, 0.5, -0.5]])
    x[blk(9)] = np.resize(t, 64)
    # subnormal block (absmax < 1e-38, bitsandbytes clamps the scale)
    x[blk(11)] = (np.arange(64) - 31).astype(np.float32) * np.float32(1e-41)
    # signed zeros with a few normal values
    t = np.zeros(64, dtype=np.float32)
    t[1::2] = -0.0
    t[5], t[17], t[40] = 0.25, -0.75, 3.0
    x[blk(12)] = t
    # huge magnitudes, up to near FLT_MAX
    x[blk(13)] = np.linspace(-3.0e38, 2.5e38, 64, dtype=np.float32)
    # tiny relative to absmax: FP4's two zero codes, +-1/384 boundary
    t = np.linspace(-0.004, 0.004, 63, dtype=np.float32)
    x[blk(14)] = np.concatenate([[1.0], t])
    # absmax from a negative value, values near -1
    x[blk(15)] = -1.0 + np.linspace(0, 0.3, 64, dtype=np.float32)
    x[blk(15)][0] = -2.0
    # The last 64-block, which is short (37 values) when n = 4069: absmax 3
    # and values for which x / 3 and x * (1/3) fall on opposite sides of a
    # midpoint. bitsandbytes divides in a short last block and multiplies by
    # the reciprocal in full ones; this tells the two apart.
    t = [v for v in division_ties(np.float32(3.0), mid_nf4) + division_ties(np.float32(3.0), mid_fp4)]
    last = np.concatenate([[3.0], t[:36]]).astype(np.float32)
    x[4032:4032 + len(last)] = last
    x[4032 + len(last):] *= np.float32(1e-3) / max(1.0, float(np.abs(x[4032 + len(last):]).max()))
    return x.astype(np.float32)


def division_ties(a, mid):
    """Values x in [-a, a] near a * midpoint where the 4-bit decision for
    x / a differs from the one for x * (1 / a), all in float32."""
    f = np.float32
    r = f(f(1) / a)
    found = []
    for m in mid:
        xs = f(m * a)
        for _ in range(4):
            xs = np.nextafter(xs, f(-np.inf), dtype=f)
        for _ in range(9):
            if abs(xs) <= a and (mid < f(xs / a)).sum() != (mid < f(xs * r)).sum():
                found.append(float(xs))
            xs = np.nextafter(xs, f(np.inf), dtype=f)
    return found


def quant4(x, n, bs, qt, compress):
    A = torch.from_numpy(x[:n].copy())
    q, st = F.quantize_4bit(A, blocksize=bs, quant_type=qt, compress_statistics=compress)
    return q.view(-1).numpy(), st


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "bnb_quant_fixture.json"))
    args = ap.parse_args()

    x = make_input()
    out = {
        "about": "bitsandbytes outputs for tests/test_quant.c; made by scripts/make_bnb_fixture.py",
        "bitsandbytes": bitsandbytes.__version__,
        "torch": torch.__version__,
        "nf4_code": hexf(F.get_4bit_type("nf4", device="cpu").numpy()),
        "fp4_code": hexf(F.get_4bit_type("fp4", device="cpu").numpy()),
        "dynamic_map": hexf(F.create_dynamic_map().numpy()),
        "input": hexf(x),
        "quant4": [],
        "quant4_dq": [],
        "int8": [],
    }

    cases = [("nf4", 64, N), ("fp4", 64, N), ("nf4", 64, 4069), ("fp4", 64, 4069),
             ("nf4", 32, N), ("fp4", 32, 4095), ("nf4", 128, N), ("fp4", 256, N),
             ("nf4", 2048, 4069), ("fp4", 4096, N), ("nf4", 4096, 3001)]
    for qt, bs, n in cases:
        q, st = quant4(x, n, bs, qt, False)
        out["quant4"].append({"type": qt, "blocksize": bs, "n": n,
                              "codes": hexu8(q), "absmax": hexf(st.absmax.numpy())})
    for qt, bs, n in [("nf4", 64, N), ("fp4", 64, 4069), ("nf4", 32, N)]:
        _, st0 = quant4(x, n, bs, qt, False)
        q, st = quant4(x, n, bs, qt, True)
        out["quant4_dq"].append({
            "type": qt, "blocksize": bs, "n": n, "codes": hexu8(q),
            "absmax": hexf(st0.absmax.numpy()),
            "qabsmax": hexu8(st.absmax.numpy()),
            "absmax2": hexf(st.state2.absmax.numpy()),
            "offset": hexf([st.offset.item()]),
        })

    # End-to-end dequantization: bitsandbytes' dequantize_4bit output for a
    # compressed (double-quant) nf4 tensor and a plain fp4 one.
    out["dequant4"] = []
    for qt, bs, n, comp in [("nf4", 64, 2048, True), ("fp4", 128, 1023, False)]:
        A = torch.from_numpy(x[:n].copy())
        q, st = F.quantize_4bit(A, blocksize=bs, quant_type=qt, compress_statistics=comp)
        y = F.dequantize_4bit(q, st)
        e = {"type": qt, "blocksize": bs, "n": n, "codes": hexu8(q.view(-1).numpy()),
             "out": hexf(y.view(-1).numpy())}
        if comp:
            e.update({"qabsmax": hexu8(st.absmax.numpy()), "absmax2": hexf(st.state2.absmax.numpy()),
                      "offset": hexf([st.offset.item()])})
        else:
            e["absmax"] = hexf(st.absmax.numpy())
        out["dequant4"].append(e)

    # A larger double-quant case: 1000 absmax values, four 256-blocks, the last
    # short. Only the absmax vectors are stored.
    g = torch.Generator().manual_seed(7)
    big = torch.randn(64000, generator=g) * (10.0 ** (torch.rand(1000, generator=g) * 2 - 3)).repeat_interleave(64)
    big = big.float()
    _, st0 = F.quantize_4bit(big, blocksize=64, quant_type="nf4", compress_statistics=False)
    _, st = F.quantize_4bit(big, blocksize=64, quant_type="nf4", compress_statistics=True)
    out["dq_large"] = {
        "absmax": hexf(st0.absmax.numpy()), "qabsmax": hexu8(st.absmax.numpy()),
        "absmax2": hexf(st.state2.absmax.numpy()), "offset": hexf([st.offset.item()]),
    }

    # The 8-bit dynamic-map quantizer alone, both bitsandbytes CPU kernels.
    g = torch.Generator().manual_seed(11)
    d = torch.randn(1300, generator=g).float() * 0.05
    d[256:512] = 0.0                                    # an all-zero block
    d[512:768] = d[512:768] * 1e-4                      # fine codes near 0
    d[768] = 1.0
    d[769:1024] = torch.linspace(-1, 1, 255)            # dense sweep
    code = F.create_dynamic_map()
    op = torch.ops.bitsandbytes.quantize_blockwise.default
    q_lut, a_lut = op(d, code, 256)
    ks = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)
    q_near, a_near = op.redispatch(ks, d, code, 256)
    out["dynamic8"] = {
        "blocksize": 256, "input": hexf(d.numpy()),
        "lut_codes": hexu8(q_lut.numpy()), "lut_absmax": hexf(a_lut.numpy()),
        "nearest_codes": hexu8(q_near.numpy()), "nearest_absmax": hexf(a_near.numpy()),
    }

    for bs in (32, 64, 128, 4096):
        A = torch.from_numpy(x.copy()).view(-1, bs)
        q, stats, _ = F.int8_vectorwise_quant(A)
        out["int8"].append({"blocksize": bs, "n": N, "codes": hexi8(q.view(-1).numpy()),
                            "absmax": hexf(stats.numpy())})

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes), "
          f"bitsandbytes {bitsandbytes.__version__}, torch {torch.__version__}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
