#!/usr/bin/env python3
"""Scripted airllm-run -i sessions: each answer of a multi-turn chat must be
the one a single-shot run of the conversation so far gives (--messages).

    chat_session.py AIRLLM_RUN MODEL_DIR N_NEW [extra airllm-run options...]

1. --json through a pipe: three turns, /reset, the first turn again. Turns 2
   and 3 must equal `--messages` runs token for token, prefill fewer tokens
   than their prompt (the KV cache is kept), and the turn after /reset must
   equal turn 1.
2. A terminal (a pty, as a user types): the streamed text of turns 2 and 3
   must equal the single-shot runs' text; Ctrl-C at the prompt does not end
   the program; Ctrl-D (EOF) ends it with status 0.
3. With CHAT_INTERRUPT=1 (a model slow enough to be caught mid-answer):
   Ctrl-C during an answer stops it and the chat goes on.
Prints PASS/FAIL lines; exits 1 on any failure."""
import json
import os
import pty
import select
import signal
import subprocess
import sys
import tempfile
import time

RUN, MODEL, N = sys.argv[1], sys.argv[2], sys.argv[3]
EXTRA = sys.argv[4:]
TURNS = ["Once upon a time there was a dog.", "What did the dog do next?",
         "Tell me about the cat."]
failed = 0


def check(ok, what):
    global failed
    print(("PASS: " if ok else "FAIL: ") + what)
    failed += not ok


def single_shot(conv, json_out=True):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(conv, f)
    args = [RUN, "-q", "--messages", f.name, "-n", N] + EXTRA + (["--json"] if json_out else []) + [MODEL]
    p = subprocess.run(args, capture_output=True, text=True)
    os.unlink(f.name)
    if p.returncode:
        raise SystemExit(f"FAIL: {' '.join(args)}: {p.stderr}")
    # JSON Lines (docs/json.md): the result line, then the summary
    return json.loads(p.stdout.splitlines()[0]) if json_out else p.stdout


def piped():
    lines = TURNS + ["/reset", TURNS[0], "/exit"]
    p = subprocess.run([RUN, "-q", "-i", "--json", "-n", N] + EXTRA + [MODEL],
                       input="\n".join(lines) + "\n", capture_output=True, text=True)
    check(p.returncode == 0, f"-i --json exits 0 ({p.stderr.strip()[-200:]})")
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    out = [o for o in lines if o["type"] == "result"]
    check(len(out) == 4, f"four answers as JSON lines (got {len(out)})")
    check(lines[-1]["type"] == "summary" and lines[-1]["sequences"] == 4,
          "then the summary line")
    if len(out) != 4:
        return []
    conv = []
    for t in range(3):
        conv.append({"role": "user", "content": TURNS[t]})
        if t > 0:
            ref = single_shot(conv)
            check(out[t]["generated_ids"] == ref["generated_ids"],
                  f"turn {t + 1} = single-shot --messages ({len(ref['generated_ids'])} ids)")
            check(out[t]["prompt_tokens"] == len(ref["prompt_ids"]),
                  f"turn {t + 1}: prompt of {out[t]['prompt_tokens']} tokens, as single-shot")
            check(out[t]["prefilled_tokens"] < out[t]["prompt_tokens"],
                  f"turn {t + 1}: only {out[t]['prefilled_tokens']} of "
                  f"{out[t]['prompt_tokens']} prompt tokens prefilled")
        conv.append({"role": "assistant", "content": out[t]["text"]})
    check(out[3]["generated_ids"] == out[0]["generated_ids"] and out[3]["turn"] == 1,
          "after /reset the first turn again gives the same answer")
    return [o["text"] for o in out[:3]]


def read_until(fd, marker, timeout=120):
    buf = b""
    end = time.time() + timeout
    while marker not in buf and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def terminal(texts):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(RUN, [RUN, "-q", "-i", "-n", N] + EXTRA + [MODEL])
    answers = []
    read_until(fd, b"> ")
    for t in TURNS:
        os.write(fd, t.encode() + b"\n")
        out = read_until(fd, b"> ")
        text = out.decode("utf-8", "replace").replace("\r\n", "\n")
        # the echoed line, then the answer, then the next prompt
        body = text.split("\n", 1)[1] if "\n" in text else ""
        answers.append(body[:-len("> ")] if body.endswith("> ") else body)
    os.kill(pid, signal.SIGINT)  # Ctrl-C at the prompt: a new prompt, not an exit
    time.sleep(0.3)
    alive = os.waitpid(pid, os.WNOHANG) == (0, 0)
    check(alive, "Ctrl-C at the prompt does not end the program")
    os.write(fd, b"\x04")  # Ctrl-D: EOF
    read_until(fd, b"\x00", timeout=5)
    _, status = os.waitpid(pid, 0)
    check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "EOF ends the chat, status 0")
    conv = []
    for t in range(3):
        conv.append({"role": "user", "content": TURNS[t]})
        if t > 0:
            ref = single_shot(conv, json_out=False)
            check(answers[t] == ref, f"terminal turn {t + 1} streams the single-shot text "
                  f"({answers[t]!r} vs {ref!r})")
        conv.append({"role": "assistant", "content": texts[t] if t < len(texts) else ""})


def interrupt():
    """Ctrl-C during a long answer: it stops there, the prompt comes back,
    the chat goes on (for a model slow enough to be caught mid-answer)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(RUN, [RUN, "-i", "-n", "400", "--ctx", "2048"] + EXTRA + [MODEL])
    read_until(fd, b"> ")
    os.write(fd, b"Write a very long story about a dragon.\n")
    time.sleep(2)
    os.write(fd, b"\x03")  # Ctrl-C, through the terminal
    t0 = time.time()
    out = read_until(fd, b"> ", timeout=60)
    check(b"(stopped)" in out and time.time() - t0 < 30,
          f"Ctrl-C stops the answer ({time.time() - t0:.1f} s)")
    os.write(fd, b"Hi\n")
    out = read_until(fd, b"\n> ", timeout=300)
    check(b"\n> " in out, "the chat goes on after an interrupted answer")
    os.write(fd, b"/exit\n")
    _, status = os.waitpid(pid, 0)
    check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "/exit, status 0")


if os.environ.get("CHAT_INTERRUPT"):
    interrupt()
texts = piped()
terminal(texts)
sys.exit(1 if failed else 0)
