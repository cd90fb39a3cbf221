#!/usr/bin/env bash
# --json on every tool (docs/json.md): each main mode's output is JSON Lines
# (one compact object a line), every line carries the fields docs/json.md
# lists for it and no others (tests/json_fields.py reads the doc's tables, so
# the doc and the tools cannot drift apart), the last line is the outcome
# and its status agrees with the exit code. Also: a rerun reports what the
# run did, --report --json prints no table, --prompts gives a result line per
# sequence even for one line, usage errors print an error object, and an
# interrupted airllm-run still writes valid lines.
. "$(dirname "$0")/testlib.sh"
: "${AIRLLM_QUANT:?set AIRLLM_QUANT}"
: "${AIRLLM_RUN:?set AIRLLM_RUN}"
S=$SCRATCH
M="$MODELS/stories260K"
DOC="$SRC_DIR/docs/json.md"
FIELDS="$SRC_DIR/tests/json_fields.py"

# jrun NAME WANT_RC CMD...: runs CMD with its stdout in $S/NAME.jsonl, and
# checks the exit code, the fields of every line, and that the last line's
# status agrees with the exit code.
jrun() {
    local name=$1 want=$2
    shift 2
    "$@" >"$S/$name.jsonl" 2>"$S/$name.err"
    local rc=$?
    if [ $rc -ne "$want" ]; then
        bad "$name: exit $rc, expected $want: $(head -c 400 "$S/$name.err")"
        return
    fi
    if ! python3 "$FIELDS" "$DOC" "$S/$name.jsonl" >"$S/$name.chk" 2>&1; then
        bad "$name: $(head -c 800 "$S/$name.chk")"
        return
    fi
    if python3 - "$S/$name.jsonl" "$rc" <<'PY'; then
import json, sys
lines = open(sys.argv[1]).read().splitlines()
last = json.loads(lines[-1])
rc = int(sys.argv[2])
assert last["type"] in ("summary", "plan"), last["type"]
assert all(json.loads(l)["type"] == "result" for l in lines[:-1]), "result lines first"
want = {0: ("ok",), 1: ("error", "failed", "incomplete"), 2: ("error",),
        130: ("interrupted",)}[rc]
assert last["status"] in want, (last["status"], rc)
if last["status"] == "error":
    assert last["exit_code"] == rc, last
PY
        ok "$name: $(wc -l <"$S/$name.jsonl") line(s), documented fields, status agrees with exit $rc"
    else
        bad "$name: last line: $(tail -n 1 "$S/$name.jsonl" | head -c 300)"
    fi
}

# py DESC FILE... <<'PY': a Python check on the outputs (sys.argv[1:])
py() {
    local desc=$1
    shift
    if python3 - "$@" >"$S/py.out" 2>&1; then ok "$desc"; else bad "$desc: $(tail -c 600 "$S/py.out")"; fi
}

# ---- the checker itself fails on what it must catch ----
printf '%s\n' '{"tool":"airllm-run","version":"0","type":"summary","status":"error","exit_code":1,"error":"x","surprise":1}' >"$S/u.jsonl"
printf '%s\n' '{"tool":"airllm-verify","version":"0","type":"summary","status":"ok","out_dir":"x"}' >"$S/m.jsonl"
printf '%s\n' '{"tool":"airllm-run","version":"0","type":"summary",' '"status":"error","exit_code":1,"error":"x"}' >"$S/i.jsonl"
printf '%s\n' '{"tool": "airllm-run", "version":"0","type":"summary","status":"error","exit_code":1,"error":"x"}' >"$S/c.jsonl"
for f in u m i c; do
    python3 "$FIELDS" "$DOC" "$S/$f.jsonl" >/dev/null 2>&1 && bad "json_fields.py accepts $f.jsonl" ||
        ok "json_fields.py rejects $f.jsonl (undocumented / missing field, indented, not compact)"
done
python3 "$FIELDS" "$DOC" --examples >"$S/ex.out" 2>&1 && ok "docs/json.md's examples match its tables" ||
    bad "docs/json.md's examples: $(head -c 600 "$S/ex.out")"

# ---- airllm-split ----
jrun split 0 "$AIRLLM_SPLIT" --json "$M" "$S/s"
jrun split_again 0 "$AIRLLM_SPLIT" --json "$M" "$S/s"
jrun split_zstd 0 "$AIRLLM_SPLIT" --json -c zstd "$M" "$S/sz"
jrun split_plan 0 "$AIRLLM_SPLIT" --json --dry-run "$M" "$S/plan"
jrun split_error 1 "$AIRLLM_SPLIT" --json "$S/nonexistent" "$S/e"
jrun split_usage 2 "$AIRLLM_SPLIT" --json --no-such-option "$M" "$S/e"
jrun split_usage_args 2 "$AIRLLM_SPLIT" --json "$M"
py "split: an already complete rerun reports the same fields and figures" "$S/split.jsonl" "$S/split_again.jsonl" <<'PY'
import json, sys
a, b = (json.loads(open(p).read()) for p in sys.argv[1:])
assert set(a) == set(b), set(a) ^ set(b)
assert not a["already_complete"] and b["already_complete"]
for k in ("out_dir", "units", "tensors", "source_bytes", "output_bytes", "family", "options"):
    assert a[k] == b[k], (k, a[k], b[k])
assert a["units"] == 8 and a["output_bytes"] > 0 and b["units_kept"] == 8 and b["bytes_read"] == 0
PY

# ---- airllm-quant ----
jrun quant 0 "$AIRLLM_QUANT" --json --report -t int8 "$M" "$S/q"
jrun quant_again 0 "$AIRLLM_QUANT" --json --report -t int8 "$M" "$S/q"
jrun quant_plan 0 "$AIRLLM_QUANT" --json -n "$M" "$S/qplan"
jrun quant_usage 2 "$AIRLLM_QUANT" --json -t int3 "$M" "$S/e"
py "quant --report --json: one line, the report in it, no table" "$S/quant.jsonl" "$S/quant_again.jsonl" <<'PY'
import json, sys
for p in sys.argv[1:]:
    lines = open(p).read().splitlines()
    assert len(lines) == 1, lines[1:2]
    j = json.loads(lines[0])
    assert len(j["report"]) == j["quant"]["tensors"] == 35, (len(j["report"]), j["quant"])
    assert 8 < j["quant"]["bits_per_weight"] < 8.6, j["quant"]
a, b = (json.loads(open(p).read()) for p in sys.argv[1:])
assert set(a) == set(b) and a["quant"] == b["quant"] and a["report"] == b["report"]
assert a["output_bytes"] == b["output_bytes"]
PY

# ---- airllm-verify ----
jrun verify 0 "$AIRLLM_VERIFY" --json "$S/s"
jrun verify_against 0 "$AIRLLM_VERIFY" --json --against "$M" "$S/q"
jrun verify_quick 0 "$AIRLLM_VERIFY" --json --quick "$S/sz"
cp -r "$S/s" "$S/bad"
printf '\x55' | dd of="$S/bad/norm.airc" bs=1 seek=200 conv=notrunc 2>/dev/null
jrun verify_failed 1 "$AIRLLM_VERIFY" --json "$S/bad"
cp -r "$S/s" "$S/inc" && rm "$S/inc/manifest.json"
jrun verify_incomplete 1 "$AIRLLM_VERIFY" --json "$S/inc"
jrun verify_error 1 "$AIRLLM_VERIFY" --json "$S/nonexistent"
jrun verify_usage 2 "$AIRLLM_VERIFY" --json
py "verify: the statuses say what happened" "$S/verify_failed.jsonl" "$S/verify_incomplete.jsonl" "$S/verify_against.jsonl" <<'PY'
import json, sys
f, i, a = (json.loads(open(p).read()) for p in sys.argv[1:])
assert f["status"] == "failed" and any(p["file"] == "norm.airc" for p in f["problems"]), f
assert i["status"] == "incomplete" and "manifest" in i["error"], i
assert a["status"] == "ok" and a["against"].endswith("stories260K"), a
PY

# ---- airllm-run ----
printf 'Once upon a time\n' >"$S/one.txt"
printf 'Once upon a time\nLily went\nids:1,403\n' >"$S/three.txt"
jrun run_prompt 0 "$AIRLLM_RUN" -q --json -p "Once" -n 6 "$S/s"
jrun run_prompts_one 0 "$AIRLLM_RUN" -q --json --prompts "$S/one.txt" -n 6 "$S/s"
jrun run_prompts 0 "$AIRLLM_RUN" -q --json --prompts "$S/three.txt" -n 400 --mem-budget 0 "$S/s"
jrun run_ids 0 "$AIRLLM_RUN" -q --json --ids 1,403 -n 3 "$S/q"
printf 'Hello\nHow are you?\n' >"$S/chat.txt"
jrun run_interactive 0 "$AIRLLM_RUN" -q --json -i -n 6 "$S/s" <"$S/chat.txt"
jrun run_error 1 "$AIRLLM_RUN" -q --json -p "Once" "$S/nonexistent"
jrun run_usage 2 "$AIRLLM_RUN" --json -p "Once" -n lots "$S/s"
jrun run_usage_inputs 2 "$AIRLLM_RUN" --json "$S/s"
py "run: a result line per sequence, the summary last" "$S/run_prompt.jsonl" "$S/run_prompts_one.jsonl" "$S/run_prompts.jsonl" "$S/run_interactive.jsonl" <<'PY'
import json, sys
p1, one, three, chat = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
for out, n in ((p1, 1), (one, 1), (three, 3), (chat, 2)):
    res = [r for r in out if r["type"] == "result"]
    assert len(res) == n == out[-1]["sequences"], (len(res), n, out[-1])
    assert sorted(r["index"] for r in res) == list(range(n)), res
    assert sum(r["tokens_generated"] for r in res) == out[-1]["tokens_generated"]
    for r in res:
        assert r["tokens_generated"] == len(r["generated_ids"])
        assert r["finish_reason"] in ("eos", "length", "stop"), r
        if r["finish_reason"] == "length":
            assert r["tokens_generated"] == (6 if out is not three else 400), r
# -n 400 on a 512-position model: the three stop at different steps and
# their lines come out as each finishes, not in prompt order necessarily
assert {r["finish_reason"] for r in three[:-1]} <= {"eos", "length"}, three
assert [r["turn"] for r in chat[:-1]] == [1, 2] and chat[1]["prefilled_tokens"] < chat[1]["prompt_tokens"]
PY

# ---- airllm-run interrupted ----
# At an exact step, by the process itself (AIRLLM_FAULT_SIGINT_STEP: the
# same handler a Ctrl-C reaches); the first prompt has finished by then.
printf 'ids:1\nOnce upon a time\n' >"$S/two.txt"
AIRLLM_FAULT_SIGINT_STEP=5 jrun run_interrupted 130 "$AIRLLM_RUN" -q --json --prompts "$S/two.txt" -n 200 "$S/s"
py "run: interrupted: what was generated, finish_reason interrupted" "$S/run_interrupted.jsonl" <<'PY'
import json, sys
out = [json.loads(l) for l in open(sys.argv[1])]
res = out[:-1]
assert out[-1]["status"] == "interrupted" and len(res) == 2, out
assert all(r["finish_reason"] == "interrupted" for r in res), res
# raised as step 5 starts: that step still ends, 6 tokens each
assert all(r["tokens_generated"] == 6 for r in res), [r["tokens_generated"] for r in res]
assert res[0]["text"], res
PY
# From outside, while it waits for its prompts on stdin (a fifo): once its
# SIGINT handler is in place (SigCgt), as a user's Ctrl-C would come.
mkfifo "$S/fifo"
"$AIRLLM_RUN" -q --json --prompts - -n 50 "$S/s" <"$S/fifo" >"$S/run_sigint.jsonl" 2>"$S/run_sigint.err" &
pid=$!
exec 3>"$S/fifo"
for _ in $(seq 100); do
    mask=$(awk '/^SigCgt:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    [ -n "$mask" ] && [ $((0x$mask & 2)) -ne 0 ] && break
    sleep 0.05
done
kill -INT "$pid"
printf 'Once\nLily\n' >&3
exec 3>&-
wait "$pid"
rc=$?
[ $rc -eq 130 ] && ok "run: SIGINT from outside: dies of the signal (130)" || bad "run: SIGINT: exit $rc: $(head -c 300 "$S/run_sigint.err")"
python3 "$FIELDS" "$DOC" "$S/run_sigint.jsonl" >"$S/sig.chk" 2>&1 &&
    py "run: SIGINT from outside: documented lines, both sequences interrupted" "$S/run_sigint.jsonl" <<'PY' || bad "run: SIGINT: $(head -c 600 "$S/sig.chk")"
import json, sys
out = [json.loads(l) for l in open(sys.argv[1])]
assert out[-1]["status"] == "interrupted", out[-1]
assert [r["finish_reason"] for r in out[:-1]] == ["interrupted"] * 2, out
PY
finish
