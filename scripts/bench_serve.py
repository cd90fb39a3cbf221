#!/usr/bin/env python3
"""Load test of a running airllm-serve (scripts/bench_serve.sh starts it).

usage: bench_serve.py PORT REQUESTS TOKENS LEVELS OUT_JSON
The same REQUESTS completions (prompt ids 1, 100+i, 200+i; TOKENS new
tokens each, greedy; every answer must have TOKENS tokens) are sent at each
concurrency of LEVELS (comma-separated; 1 = one after another). Prints, per
level: wall seconds, aggregate tokens/s, request latency p50/p99, and the
server's steps (from /metrics) for the level; writes them to OUT_JSON.
"""
import http.client
import json
import sys
import threading
import time

port, nreq, ntok = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
levels = [int(x) for x in sys.argv[4].split(",")]
out_path = sys.argv[5]


def post(i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    body = {"prompt": [1, 100 + i, 200 + i], "max_tokens": ntok, "temperature": 0}
    t0 = time.monotonic()
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = json.loads(r.read())
    dt = time.monotonic() - t0
    c.close()
    if r.status != 200 or data["usage"]["completion_tokens"] != ntok:
        raise SystemExit(f"request {i}: {r.status} {data}")
    return dt


def steps():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    return int(next(l.split()[1] for l in text.splitlines() if l.startswith("airllm_steps_total")))


def pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


rows = []
for level in levels:
    lat = [0.0] * nreq
    nxt = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= nreq:
                return
            lat[i] = post(i)
    s0 = steps()
    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(min(level, nreq))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.monotonic() - t0
    row = {"concurrency": level, "requests": nreq, "tokens": nreq * ntok, "wall_s": wall,
           "tokens_per_s": nreq * ntok / wall, "p50_s": pct(lat, 50), "p99_s": pct(lat, 99),
           "steps": steps() - s0}
    rows.append(row)
    print(f"concurrency {level:3d}: {wall:8.2f} s, {row['tokens_per_s']:7.3f} tokens/s, "
          f"latency p50 {row['p50_s']:.2f} s p99 {row['p99_s']:.2f} s, {row['steps']} steps",
          flush=True)
base = rows[0]["tokens_per_s"]
for r in rows:
    r["ratio"] = r["tokens_per_s"] / base
    print(f"tokens/s at concurrency {r['concurrency']} / concurrency {rows[0]['concurrency']}: "
          f"{r['ratio']:.2f}x")
with open(out_path, "w") as f:
    json.dump(rows, f, indent=1)
