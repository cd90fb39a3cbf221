#!/usr/bin/env python3
"""What quantization costs a model's outputs (Python stdlib only).

usage: quant_quality.py RUN REF_DIR QUANT_DIR PROMPTS.json N MAX_KL MIN_AGREE

PROMPTS.json is a golden file (../shared/golden/*.json) or a list of
{"prompt_ids": [...]} or {"prompt": "text", "chat": true} objects. For each prompt both directories run greedily
for N tokens with --dump-logits. Reported:
  - mean KL(P_ref || P_quant) of the next-token distributions at the last
    prompt position (natural log);
  - greedy agreement: the fraction of the N generated positions where the
    quantized run's token equals the reference run's, counted up to the
    first difference (after it the two continue from different texts).
Fails when the mean KL exceeds MAX_KL or the agreement is below MIN_AGREE.
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile


def run(binary, model, case, n, dump):
    src = ["--ids", ",".join(map(str, case["prompt_ids"]))] if case.get("prompt_ids") else \
        ["-p", case["prompt"]] + (["--chat"] if case.get("chat") else [])
    out = subprocess.run([binary, "-q", "--json"] + src + ["-n", str(n), "--dump-logits", dump, model],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("FAIL: %s: %s" % (model, out.stderr[:400]))
    raw = open(dump, "rb").read()
    # the first of the JSON lines is the result (docs/json.md)
    return json.loads(out.stdout.splitlines()[0])["generated_ids"], struct.unpack("<%df" % (len(raw) // 4), raw)


def softmax(v):
    m = max(v)
    e = [math.exp(x - m) for x in v]
    s = sum(e)
    return [x / s for x in e]


def main():
    binary, ref, quant, prompts, n, max_kl, min_agree = sys.argv[1:8]
    n, max_kl, min_agree = int(n), float(max_kl), float(min_agree)
    data = json.load(open(prompts))
    cases = data["cases"] if isinstance(data, dict) else data
    kls, agree, total = [], 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "l.bin")
        for c in cases:
            g_ref, l_ref = run(binary, ref, c, n, d)
            g_q, l_q = run(binary, quant, c, n, d)
            p, q = softmax(l_ref), softmax(l_q)
            kls.append(sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q) if a > 0))
            k = 0
            while k < min(len(g_ref), len(g_q)) and g_ref[k] == g_q[k]:
                k += 1
            agree += k
            total += len(g_ref)
    mean_kl = sum(kls) / len(kls)
    ratio = agree / total if total else 0
    print("%s: mean KL %.5f (max %.5f) over %d prompts; greedy agreement %d/%d = %.3f" %
          (os.path.basename(quant.rstrip("/")), mean_kl, max(kls), len(kls), agree, total, ratio))
    if mean_kl > max_kl or ratio < min_agree:
        print("FAIL: above KL %g or below agreement %g" % (max_kl, min_agree))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
