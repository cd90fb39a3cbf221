#!/usr/bin/env python3
"""airllm-serve against solo airllm-run runs (tests/serve.sh starts the
servers). Prints PASS/FAIL lines; exits 1 if anything failed.

usage: serve_check.py MODE PORT AIRLLM_RUN MODEL_DIR SCRATCH [--openai]
MODE main: equality (greedy, sampled, chat, streamed), 8 concurrent clients
and the layer-read counters, the hostile corpus, a disconnect.
MODE limits: a server started with --max-batch 1 --queue 1 --api-key secret.
MODE kv: a server started with --kv-budget 1M --max-batch 8.
MODE chat: a real chat model (SmolLM2): chat answers, plain, streamed and
through the openai client, equal airllm-run --messages.
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

mode, port, RUN, MODEL, SCRATCH = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
use_openai = "--openai" in sys.argv
HOST = "127.0.0.1"
npass = nfail = 0
lock = threading.Lock()


def ok(msg):
    global npass
    with lock:
        npass += 1
        print("PASS:", msg, flush=True)


def bad(msg):
    global nfail
    with lock:
        nfail += 1
        print("FAIL:", msg, flush=True)


def check(cond, msg, detail=""):
    (ok if cond else bad)(msg if cond else f"{msg}: {detail}")


def request(method, path, body=None, headers=None, raw=None, timeout=60):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    out = r.read()
    c.close()
    return r.status, out


def post(path, body, **kw):
    st, out = request("POST", path, body, **kw)
    try:
        return st, json.loads(out)
    except ValueError:
        return st, out


def stream(path, body):
    """The deltas of a server-sent-event stream, and whether it ended with [DONE]."""
    c = http.client.HTTPConnection(HOST, port, timeout=60)
    c.request("POST", path, body=json.dumps(dict(body, stream=True)),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    text, finish, done, usage = "", None, False, None
    for line in r.read().decode().split("\n"):
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            done = True
            continue
        ev = json.loads(line[6:])
        if ev.get("usage"):
            usage = ev["usage"]
        for ch in ev.get("choices", []):
            text += ch.get("text") or (ch.get("delta") or {}).get("content") or ""
            finish = ch.get("finish_reason") or finish
    c.close()
    return r.status, text, finish, done, usage


def metrics():
    st, out = request("GET", "/metrics")
    m = {}
    for line in out.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.split()
            m[k] = int(v)
    return m


def solo(args, n):
    """airllm-run's text for a solo run (--json)."""
    p = subprocess.run([RUN, "-q", "--json", "-n", str(n), "--mem-budget", "0"] + args + [MODEL],
                       capture_output=True, text=True, timeout=120)
    if p.returncode:
        raise RuntimeError(p.stderr)
    # JSON Lines (docs/json.md): the result line comes first
    return json.loads(p.stdout.splitlines()[0])["text"]


PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben went to the park",
           "One day, a big red ball", "Tom had a toy car", "The sun was hot",
           "A cat sat on the mat", "Sam wanted to fly"]


def run_main():
    # Greedy and sampled completions equal solo airllm-run runs.
    for p in PROMPTS[:3]:
        want = solo(["-p", p], 40)
        st, r = post("/v1/completions", {"prompt": p, "max_tokens": 40, "temperature": 0})
        got = r["choices"][0]["text"] if st == 200 else r
        check(st == 200 and got == want, f"greedy completion '{p}' = airllm-run's", f"{st} {got!r} vs {want!r}")
        check(st == 200 and r["usage"]["completion_tokens"] == 40 and r["choices"][0]["finish_reason"] == "length",
              f"usage block '{p}'", r)
    want = solo(["-p", PROMPTS[0], "--temperature", "0.9", "--top-p", "0.9", "--seed", "1234"], 40)
    st, r = post("/v1/completions", {"prompt": PROMPTS[0], "max_tokens": 40, "temperature": 0.9,
                                     "top_p": 0.9, "seed": 1234})
    check(st == 200 and r["choices"][0]["text"] == want, "sampled completion (seed 1234) = airllm-run's",
          f"{r} vs {want!r}")
    # Chat, plain and streamed, against airllm-run --messages.
    msgs = [{"role": "user", "content": "Tell me a story about a cat."}]
    mf = os.path.join(SCRATCH, "msgs.json")
    with open(mf, "w") as f:
        json.dump(msgs, f)
    want_chat = solo(["--messages", mf], 30)
    st, r = post("/v1/chat/completions", {"model": "x", "messages": msgs, "max_tokens": 30})
    got = r["choices"][0]["message"]["content"] if st == 200 else r
    check(st == 200 and got == want_chat, "chat completion = airllm-run --messages", f"{got!r} vs {want_chat!r}")
    st, text, finish, done, usage = stream("/v1/chat/completions",
                                           {"messages": msgs, "max_tokens": 30,
                                            "stream_options": {"include_usage": True}})
    check(st == 200 and text == want_chat and done and finish == "length" and usage and
          usage["completion_tokens"] == 30, "streamed chat = airllm-run --messages, [DONE], usage",
          f"{st} {text!r} {finish} {done} {usage}")
    st, text, finish, done, _ = stream("/v1/completions", {"prompt": PROMPTS[1], "max_tokens": 25})
    want = solo(["-p", PROMPTS[1]], 25)
    check(st == 200 and text == want and done, "streamed completion = airllm-run's", f"{text!r} vs {want!r}")
    # A stop string cuts the text before it, streamed or not.
    full = solo(["-p", PROMPTS[0]], 40)
    cut = full.find("Lily")
    if cut > 0:
        st, r = post("/v1/completions", {"prompt": PROMPTS[0], "max_tokens": 40, "stop": ["Lily", "zzz"]})
        check(st == 200 and r["choices"][0]["text"] == full[:cut] and r["choices"][0]["finish_reason"] == "stop",
              "stop string", r)
        st, text, finish, done, _ = stream("/v1/completions", {"prompt": PROMPTS[0], "max_tokens": 40, "stop": "Lily"})
        check(text == full[:cut] and finish == "stop", "stop string, streamed", f"{text!r} {finish}")
    st, r = request("GET", "/v1/models")
    check(st == 200 and json.loads(r)["data"][0]["object"] == "model", "GET /v1/models")
    check(request("GET", "/health")[0] == 200, "GET /health")

    if use_openai:
        import openai
        cl = openai.OpenAI(base_url=f"http://{HOST}:{port}/v1", api_key="none", max_retries=0)
        r = cl.chat.completions.create(model="m", messages=msgs, max_tokens=30, temperature=0)
        check(r.choices[0].message.content == want_chat and r.usage.completion_tokens == 30,
              "openai client: chat completion = airllm-run's", r)
        parts = [ch.choices[0].delta.content or "" for ch in
                 cl.chat.completions.create(model="m", messages=msgs, max_tokens=30, stream=True)
                 if ch.choices]
        check("".join(parts) == want_chat, "openai client: streamed chat = airllm-run's", parts)
        r = cl.completions.create(model="m", prompt=PROMPTS[2], max_tokens=40)
        check(r.choices[0].text == solo(["-p", PROMPTS[2]], 40), "openai client: completion", r)
        check([m.id for m in cl.models.list()] == [os.path.basename(MODEL.rstrip("/"))],
              "openai client: models.list")
        try:
            cl.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], max_tokens=100000)
            bad("openai client: over-long request accepted")
        except openai.BadRequestError as e:
            check(e.status_code == 400, "openai client: over-long request is a BadRequestError")

    # 8 concurrent clients on a streamed model: each equals its solo run, and
    # the steps (one read of every layer each) are shared, not per client.
    lens = [120 + 10 * i for i in range(8)]
    wants = [solo(["-p", p], n) for p, n in zip(PROMPTS, lens)]
    m0 = metrics()
    st, r = post("/v1/completions", {"prompt": PROMPTS[0], "max_tokens": 60})
    m1 = metrics()
    solo_steps = m1["airllm_steps_total"] - m0["airllm_steps_total"]
    per_step = (m1["airllm_bytes_read_total"] - m0["airllm_bytes_read_total"]) / max(solo_steps, 1)
    got = [None] * 8
    barrier = threading.Barrier(8)

    def client(i):
        barrier.wait()
        if i % 2:
            got[i] = stream("/v1/completions", {"prompt": PROMPTS[i], "max_tokens": lens[i]})[1]
        else:
            st, r = post("/v1/completions", {"prompt": PROMPTS[i], "max_tokens": lens[i]})
            got[i] = r["choices"][0]["text"] if st == 200 else r
    ts = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    m2 = metrics()
    for i in range(8):
        check(got[i] == wants[i], f"concurrent client {i} = its solo run", f"{got[i]!r} vs {wants[i]!r}")
    steps = m2["airllm_steps_total"] - m1["airllm_steps_total"]
    nbytes = m2["airllm_bytes_read_total"] - m1["airllm_bytes_read_total"]
    total = sum(lens)
    print(f"8 clients: {total} tokens in {steps} steps, {nbytes} bytes read "
          f"({nbytes / max(steps, 1):.0f} per step; solo {per_step:.0f} per step, {solo_steps} steps for 60 tokens)")
    check(solo_steps == 60 and per_step > 0, "solo request: one step per token", solo_steps)
    check(steps <= total / 2, "8 clients share steps", f"{steps} steps for {total} tokens")
    check(nbytes <= (steps + 3) * per_step * 1.01,
          "layers read once per step, not once per client", f"{nbytes} bytes > ({steps} + 3) x {per_step:.0f}")

    # The hostile corpus, while a normal streamed request runs alongside.
    side = {}

    def normal():
        side["r"] = stream("/v1/completions", {"prompt": PROMPTS[3], "max_tokens": 200})
    want_side = solo(["-p", PROMPTS[3]], 200)
    th = threading.Thread(target=normal)
    th.start()
    J = "/v1/chat/completions"
    C = "/v1/completions"
    good = {"messages": [{"role": "user", "content": "hi"}]}
    corpus = [
        ("bad JSON", "POST", J, b'{"messages": [', 400),
        ("empty body", "POST", J, b"", 400),
        ("not an object", "POST", J, b"[1, 2]", 400),
        ("messages a string", "POST", J, json.dumps({"messages": "hi"}).encode(), 400),
        ("message without content", "POST", J, json.dumps({"messages": [{"role": "user"}]}).encode(), 400),
        ("unknown role", "POST", J, json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(), 400),
        ("last message not the user's", "POST", J,
         json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}).encode(), 400),
        ("max_tokens a string", "POST", J, json.dumps(dict(good, max_tokens="10")).encode(), 400),
        ("max_tokens 0", "POST", J, json.dumps(dict(good, max_tokens=0)).encode(), 400),
        ("max_tokens 2.5", "POST", J, json.dumps(dict(good, max_tokens=2.5)).encode(), 400),
        ("temperature -1", "POST", J, json.dumps(dict(good, temperature=-1)).encode(), 400),
        ("top_p 0", "POST", J, json.dumps(dict(good, top_p=0)).encode(), 400),
        ("stream a string", "POST", J, json.dumps(dict(good, stream="yes")).encode(), 400),
        ("stop numbers", "POST", J, json.dumps(dict(good, stop=[1, 2])).encode(), 400),
        ("five stop strings", "POST", J, json.dumps(dict(good, stop=["a", "b", "c", "d", "e"])).encode(), 400),
        ("n 2", "POST", J, json.dumps(dict(good, n=2)).encode(), 400),
        ("seed negative", "POST", J, json.dumps(dict(good, seed=-1)).encode(), 400),
        ("model a number", "POST", J, json.dumps(dict(good, model=3)).encode(), 400),
        ("invalid UTF-8", "POST", J, b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', 400),
        ("overlong UTF-8", "POST", C, b'{"prompt": "\xc0\xaf"}', 400),
        ("lone surrogate escape", "POST", C, b'{"prompt": "\\ud800"}', 400),
        ("prompt past the context", "POST", C, json.dumps({"prompt": [1] * 600}).encode(), 400),
        ("max_tokens past the context", "POST", C, json.dumps({"prompt": "hi", "max_tokens": 100000}).encode(), 400),
        ("token id outside the vocabulary", "POST", C, json.dumps({"prompt": [1, 99999]}).encode(), 400),
        ("prompt ids not integers", "POST", C, json.dumps({"prompt": [1, "a"]}).encode(), 400),
        ("deep nesting", "POST", C, b"[" * 100000 + b"]" * 100000, 400),
        ("huge body", "POST", C, b'{"prompt": "' + b"a" * (2 << 20) + b'"}', 413),
        ("unknown endpoint", "POST", "/v1/embeddings", b"{}", 404),
        ("GET a POST endpoint", "GET", C, None, 405),
        ("POST /health", "POST", "/health", b"{}", 405),
    ]
    for desc, method, path, body, want in corpus:
        try:
            st, out = request(method, path, raw=body)
            err = json.loads(out).get("error", {})
            check(st == want and isinstance(err.get("message"), str) and err.get("type"),
                  f"hostile: {desc} -> {want} with an error object", f"{st} {out[:200]!r}")
        except Exception as e:  # noqa: BLE001 - any failure is a test failure
            bad(f"hostile: {desc}: {e!r}")
    st, out = request("POST", C, raw=json.dumps({"prompt": [1] * 600}).encode())
    check(json.loads(out)["error"].get("code") == "context_length_exceeded", "over-long prompt: code context_length_exceeded")
    # A slow client (declares a body, sends part of it) holds only its own thread.
    s = socket.create_connection((HOST, port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 100\r\n\r\n{\"prompt\":")
    t0 = time.time()
    st, r = post("/v1/completions", {"prompt": PROMPTS[4], "max_tokens": 20})
    check(st == 200 and r["choices"][0]["text"] == solo(["-p", PROMPTS[4]], 20),
          "a normal request completes beside a slow client", f"{st} after {time.time() - t0:.1f} s")
    s.close()
    # A client trickling its body a byte at a time (never idle, so the
    # idle timeout never fires) gets a 408 once the body is --timeout (5 s)
    # late, and its connection is closed.
    s = socket.create_connection((HOST, port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000\r\n\r\n")
    s.settimeout(0.3)
    got, t0, sending = b"", time.time(), True
    while time.time() - t0 < 20:
        if sending:
            try:
                s.sendall(b" ")
            except OSError:
                sending = False
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    took = time.time() - t0
    s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    try:
        err = json.loads(body).get("error", {})
    except ValueError:
        err = {}
    check(head.startswith(b"HTTP/1.1 408") and err.get("type") and "--timeout" in err.get("message", "")
          and 4.5 < took < 12, "a body trickled past --timeout gets 408 and the connection closes",
          f"{took:.1f} s: {got[:300]!r}")
    th.join()
    st, text, finish, done, _ = side["r"]
    check(st == 200 and text == want_side and done, "the request running beside the corpus is right",
          f"{text!r} vs {want_side!r}")

    # A client that goes away mid-stream frees its slot.
    m0 = metrics()
    s = socket.create_connection((HOST, port))
    body = json.dumps({"prompt": PROMPTS[5], "max_tokens": 480, "stream": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    s.recv(100)
    s.close()
    for _ in range(100):
        m1 = metrics()
        if m1["airllm_running"] == 0:
            break
        time.sleep(0.05)
    made = m1["airllm_generated_tokens_total"] - m0["airllm_generated_tokens_total"]
    check(m1["airllm_running"] == 0 and made < 480, "a disconnected client frees its slot",
          f"running {m1['airllm_running']}, {made} tokens made")


def run_chat():
    """A real chat model: answers plain, streamed and through the openai
    client equal airllm-run --messages (greedy)."""
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    mf = os.path.join(SCRATCH, "chat_msgs.json")
    with open(mf, "w") as f:
        json.dump(msgs, f)
    want = solo(["--messages", mf], 24)
    st, r = post("/v1/chat/completions", {"messages": msgs, "max_tokens": 24})
    got = r["choices"][0]["message"]["content"] if st == 200 else r
    check(st == 200 and got == want, f"chat = airllm-run --messages ({want!r})", f"{got!r}")
    st, text, finish, done, _ = stream("/v1/chat/completions", {"messages": msgs, "max_tokens": 24})
    check(text == want and done, "streamed chat = airllm-run --messages", f"{text!r}")
    if use_openai:
        import openai
        cl = openai.OpenAI(base_url=f"http://{HOST}:{port}/v1", api_key="none", max_retries=0)
        r = cl.chat.completions.create(model="m", messages=msgs, max_tokens=24)
        check(r.choices[0].message.content == want, "openai client: chat", r)
        parts = [ch.choices[0].delta.content or "" for ch in
                 cl.chat.completions.create(model="m", messages=msgs, max_tokens=24, stream=True)
                 if ch.choices]
        check("".join(parts) == want, "openai client: streamed chat", parts)


def run_kv():
    """--kv-budget 1M --max-batch 8: a 501-position sequence of stories260K
    holds 641280 bytes of KV cache (5 layers x 2 x 4 KV heads x 8 dims x 4
    bytes per position), so a second one waits in the queue until the
    first leaves, and both answers are right."""
    want = solo(["--ids", "1"], 500)
    res = {}
    s0 = metrics()["airllm_steps_total"]

    def one(name):
        st, r = post("/v1/completions", {"prompt": [1], "max_tokens": 500})
        res[name] = r["choices"][0]["text"] if st == 200 else r
    a = threading.Thread(target=one, args=("a",))
    a.start()
    for _ in range(400):
        if metrics()["airllm_running"] == 1:
            break
        time.sleep(0.005)
    b = threading.Thread(target=one, args=("b",))
    b.start()
    a.join()
    b.join()
    steps = metrics()["airllm_steps_total"] - s0
    # together they would take about 500 steps; one after the other, 1000
    check(steps == 1000, "--kv-budget: the second sequence waits until the first leaves",
          f"{steps} steps")
    check(res["a"] == want and res["b"] == want, "--kv-budget: both answers equal the solo run",
          (res["a"][:60], res["b"][:60]))


def run_limits():
    auth = {"Authorization": "Bearer secret"}
    st, _ = request("GET", "/v1/models")
    check(st == 401, "--api-key: no key -> 401", st)
    st, _ = request("GET", "/v1/models", headers={"Authorization": "Bearer nope"})
    check(st == 401, "--api-key: wrong key -> 401", st)
    st, _ = request("GET", "/v1/models", headers=auth)
    check(st == 200, "--api-key: right key -> 200", st)
    check(request("GET", "/health")[0] == 200, "/health needs no key")
    # One running, one queued: the third gets 503.
    res = {}

    def long(name):
        res[name] = post("/v1/completions", {"prompt": [1], "max_tokens": 500}, headers=auth)

    def wait_for(key, n):
        for _ in range(400):
            if metrics()[key] >= n:
                return True
            time.sleep(0.005)
        return False
    a = threading.Thread(target=long, args=("a",))
    a.start()
    wait_for("airllm_running", 1)
    b = threading.Thread(target=long, args=("b",))
    b.start()
    queued = wait_for("airllm_queued", 1)
    st, r = post("/v1/completions", {"prompt": [1], "max_tokens": 5}, headers=auth)
    check(queued and st == 503 and "queue" in r["error"]["message"], "queue full -> 503", f"{queued} {st} {r}")
    a.join()
    b.join()
    check(res["a"][0] == 200 and res["b"][0] == 200, "the running and the queued request complete",
          (res["a"][0], res["b"][0]))


{"main": run_main, "limits": run_limits, "chat": run_chat, "kv": run_kv}[mode]()
print(f"{npass} passed, {nfail} failed")
sys.exit(1 if nfail else 0)
