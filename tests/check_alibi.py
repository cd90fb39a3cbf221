#!/usr/bin/env python3
"""rt_alibi_slopes against Baichuan's slope rule (modeling_baichuan.py's
_get_interleave, restated here from its description: for n a power of two,
slope i is start * start**i with start = 2**(-2**-(log2(n) - 3)); otherwise
the slopes of p = 2**floor(log2 n) heads, then every other slope of 2p
heads, n - p of them), each rounded to float32 as torch.Tensor does. The
head counts include the real Baichuan-13B's 40 and the goldens' 6.

usage: check_alibi.py TEST_ALIBI_BINARY"""
import math
import struct
import subprocess
import sys


def rule(n):
    if math.log2(n).is_integer():
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]
    p = 2 ** math.floor(math.log2(n))
    return rule(p) + rule(2 * p)[0::2][:n - p]


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


counts = [1, 2, 3, 5, 6, 7, 8, 12, 32, 40, 48, 64, 80, 100]
out = subprocess.run([sys.argv[1]] + [str(n) for n in counts], capture_output=True, text=True,
                     check=True).stdout.split("\n")
bad = 0
for n, line in zip(counts, out):
    got = [f32(float(v)) for v in line.split()[1:]]  # %.9g round-trips a float
    want = [f32(v) for v in rule(n)]
    if got != want:
        bad += 1
        print("FAIL %d heads: %s, want %s" % (n, got[:6], want[:6]))
print("%d head counts, %d differ" % (len(counts), bad))
sys.exit(1 if bad else 0)
