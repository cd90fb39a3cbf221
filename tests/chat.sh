#!/usr/bin/env bash
# airllm-run's chat side: -i sessions whose answers equal single-shot
# --messages runs (tests/chat_session.py: a pipe with --json and a pty),
# resident and streamed; the context-full message; prompts from -f FILE
# (CRLF), '-' (stdin) and --prompts -; tokenizer.model / *.tiktoken
# checkpoints; bad --messages files.
. "$(dirname "$0")/testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
R=$AIRLLM_RUN
S=$SCRATCH

"$AIRLLM_SPLIT" -q "$MODELS/stories260K" "$S/s"

# ---- interactive = single shot, resident and streamed ----
for extra in "" "--mem-budget 0"; do
    if python3 "$SRC_DIR/tests/chat_session.py" "$R" "$S/s" 16 $extra >"$S/sess.out" 2>&1; then
        ok "-i session ${extra:-resident}: $(grep -c PASS "$S/sess.out") checks"
    else
        bad "-i session ${extra:-resident}: $(grep -v PASS "$S/sess.out" | head -c 1500)"
    fi
done

# ---- a full context: said, and the chat goes on ----
printf 'Once upon a time there was a little dog who liked to run in the park.\n/exit\n' |
    "$R" -q -i --ctx 24 -n 8 "$S/s" >"$S/last.out" 2>"$S/last.err"
rc=$?
[ $rc -eq 0 ] && ok "-i: a too long turn is not fatal" || bad "-i --ctx 24: exit $rc"
expect_err "context is full" "-i: the context-full message"
printf 'Hi\n' | "$R" -q -i --ctx 40 -n 30 --json "$S/s" >"$S/last.out" 2>"$S/last.err"
grep -q '"finish_reason":"context"' "$S/last.out" && ok "-i: an answer that fills the context stops there" ||
    bad "-i --ctx 40: $(cat "$S/last.out" "$S/last.err")"
expect_err "context is full" "-i: the answer's context-full message"

# ---- prompts from files and stdin ----
"$R" -q -p "Once upon a time" -n 12 --json "$S/s" | python3 -c \
    'import json,sys; print(json.loads(sys.stdin.readline())["generated_ids"])' >"$S/p.ids"
printf 'Once upon a time\r\n' >"$S/crlf.txt"
for src in "-f $S/crlf.txt" "--file $S/crlf.txt"; do
    "$R" -q $src -n 12 --json "$S/s" | python3 -c \
        'import json,sys; print(json.loads(sys.stdin.readline())["generated_ids"])' >"$S/f.ids"
    cmp -s "$S/p.ids" "$S/f.ids" && ok "$src (CRLF, final newline) = -p" || bad "$src differs from -p"
done
printf 'Once upon a time\n' | "$R" -q -f - -n 12 --json "$S/s" | python3 -c \
    'import json,sys; print(json.loads(sys.stdin.readline())["generated_ids"])' >"$S/f.ids"
cmp -s "$S/p.ids" "$S/f.ids" && ok "-f - (stdin) = -p" || bad "-f - differs from -p"
printf 'Once upon a time\r\nThe cat\r\n' | "$R" -q --prompts - -n 12 --json "$S/s" >"$S/last.out"
python3 -c '
import json,sys
r=[d for d in map(json.loads, open(sys.argv[1])) if d["type"]=="result" and d["index"]==0]
print(r[0]["generated_ids"])' "$S/last.out" >"$S/f.ids"
cmp -s "$S/p.ids" "$S/f.ids" && ok "--prompts - with CRLF lines" || bad "--prompts - differs"
printf 'Once\0upon\n' >"$S/nul.txt"
run 1 "-f: a NUL byte is refused" "$R" -q -f "$S/nul.txt" "$S/s"
expect_err "NUL" "names the NUL"

# ---- --messages ----
printf '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]' >"$S/m.json"
run 1 "--messages ending with the assistant" "$R" -q --messages "$S/m.json" "$S/s"
expect_err "last message must be the user's" "says which message is wrong"
printf '{"role": "user"}' >"$S/m.json"
run 1 "--messages not an array" "$R" -q --messages "$S/m.json" "$S/s"
expect_err "$S/m.json" "names the file"
printf '[{"role": "user", "content": "Hi"}] x' >"$S/m.json"
run 1 "--messages with trailing text" "$R" -q --messages "$S/m.json" "$S/s"
run 2 "--system without a chat" "$R" -q -p hi --system x "$S/s"
run 2 "--ctx without -i" "$R" -q -p hi --ctx 10 "$S/s"
run 1 "--template unknown" "$R" -q --chat -p hi --template vicuna "$S/s"
expect_err "vicuna" "names the template"
run 0 "--system with --chat" "$R" -q --chat --system "Be brief." -p hi -n 4 "$S/s"

# ---- a checkpoint with tokenizer.model only (no tokenizer.json) ----
rm -rf "$S/spm" "$S/spmc"
mkdir "$S/spm"
cp "$MODELS/stories260K"/{config.json,generation_config.json,model.safetensors,tokenizer.model} "$S/spm/"
printf '{"tokenizer_class": "LlamaTokenizer", "add_bos_token": true, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}' >"$S/spm/tokenizer_config.json"
"$AIRLLM_SPLIT" -q "$S/spm" "$S/spmc"
[ -f "$S/spmc/tokenizer.model" ] && ok "split copies tokenizer.model" || bad "no tokenizer.model in the output"
run 0 "a tokenizer.model checkpoint runs a text prompt" "$R" -q -p "Once upon a time" -n 8 --json "$S/spmc"
python3 - "$S/last.out" "$MODELS/stories260K/tokenizer.model" <<'PY' && ok "tokenizer.model: BOS + sentencepiece ids" || bad "tokenizer.model prompt ids"
import json, sys
import sentencepiece as spm
d = json.loads(open(sys.argv[1]).readline())  # the result line
sp = spm.SentencePieceProcessor(model_file=sys.argv[2])
sys.exit(0 if d["prompt_ids"] == [1] + sp.encode("Once upon a time") else 1)
PY

finish
