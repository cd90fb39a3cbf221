#!/usr/bin/env python3
"""Compare airllm-run against golden outputs (Python stdlib only).

usage: run_golden.py RUN MODEL_DIR GOLDEN.json TOL [--batch] [-- RUN_ARGS...]

GOLDEN.json is either ../shared/golden/<model>.json ({"cases": [...],
"max_new_tokens": N}) or a tests/data/arch/<case>/golden.json (one case,
8 greedy tokens). For every case the runner gets the prompt ids, greedy
decoding and --dump-logits; greedy_ids must match exactly (a run that stops
at EOS must stop where the golden has EOS) and every last-position logit
must be within TOL. With --batch all cases run in one invocation through
--prompts (lines of ids:...), and each must still match: the batch must not
change any sequence's output.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile


def load_cases(path):
    g = json.load(open(path))
    if "cases" in g:
        return g["cases"], g["max_new_tokens"]
    return [g], len(g["greedy_ids"])


def check(case, gen, logits, tol, label):
    problems = []
    want = case["greedy_ids"]
    # A run stops early only at EOS, which the golden then has at that place.
    if not gen or gen != want[:len(gen)]:
        problems.append("greedy ids differ: got %s, want %s" % (gen[:16], want[:16]))
    ref = case["last_logits"]
    if len(logits) != len(ref):
        problems.append("%d logits, golden has %d" % (len(logits), len(ref)))
    else:
        worst = max(abs(a - b) for a, b in zip(logits, ref))
        if worst > tol:
            problems.append("max |logit - golden| = %.3g > %g" % (worst, tol))
        case["_worst"] = worst
    for p in problems:
        print("FAIL %s: %s" % (label, p))
    return not problems


def main():
    args = sys.argv[1:]
    extra = []
    if "--" in args:
        i = args.index("--")
        args, extra = args[:i], args[i + 1:]
    batch = "--batch" in args
    args = [a for a in args if a != "--batch"]
    run, model, golden, tol = args[0], args[1], args[2], float(args[3])
    cases, max_new = load_cases(golden)
    ok = True
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "logits.bin")
        if batch:
            pf = os.path.join(tmp, "prompts.txt")
            with open(pf, "w") as f:
                for c in cases:
                    f.write("ids:" + ",".join(map(str, c["prompt_ids"])) + "\n")
            cmd = [run, "-q", "--json", "--prompts", pf, "-n", str(max_new), "--dump-logits", dump] + extra + [model]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print("FAIL batch: exit %d: %s" % (out.returncode, out.stderr[:500]))
                return 1
            # JSON Lines (docs/json.md): a result line per sequence as it
            # finishes, then the summary
            results = sorted((r for r in map(json.loads, out.stdout.splitlines())
                              if r["type"] == "result"), key=lambda r: r["index"])
            raw = open(dump, "rb").read()
            n = len(raw) // 4 // len(cases)
            vals = struct.unpack("<%df" % (len(raw) // 4), raw)
            for i, c in enumerate(cases):
                ok &= check(c, results[i]["generated_ids"], vals[i * n:(i + 1) * n], tol,
                            "batch case %d" % i)
                worst = max(worst, c.get("_worst", 0))
        else:
            for i, c in enumerate(cases):
                cmd = [run, "-q", "--json", "--ids", ",".join(map(str, c["prompt_ids"])), "-n",
                       str(max_new), "--dump-logits", dump] + extra + [model]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    print("FAIL case %d: exit %d: %s" % (i, out.returncode, out.stderr[:500]))
                    ok = False
                    continue
                j = json.loads(out.stdout.splitlines()[0])  # the result line
                raw = open(dump, "rb").read()
                vals = struct.unpack("<%df" % (len(raw) // 4), raw)
                ok &= check(c, j["generated_ids"], vals, tol, "case %d" % i)
                worst = max(worst, c.get("_worst", 0))
    print("%s: %d cases %s, max |logit diff| %.3g (%s)" %
          (os.path.basename(golden), len(cases), "match" if ok else "FAIL", worst,
           " ".join(extra) + (" batch" if batch else "")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
