#!/usr/bin/env bash
# Issue 18: shard names with a space, UTF-8, and 255 bytes (the longest
# airllm_safe_filename allows). The journal split them with sscanf("%s"), so
# a --delete-original run interrupted after deleting such a shard could
# never resume. Killed at every durable step, each resumed run must finish
# and verify byte-exact, and no byte may be lost. A journal in the first
# format (bare names) left by an older version must be read exactly too.
. "$(dirname "$0")/../testlib.sh"

src="$MODELS/stories260K-bf16-sharded"
pristine="$SCRATCH/pristine"
long=$(printf 'x%.0s' $(seq 1 243)).safetensors # 255 bytes
python3 - "$src" "$pristine" "$long" <<'PY'
import json, os, shutil, sys
src, dst, long = sys.argv[1:4]
os.makedirs(dst)
names = {
    "model-00001-of-00003.safetensors": "model 00001 of 3.safetensors",
    "model-00002-of-00003.safetensors": "mod\u00e8le-\u6a21\u578b-00002 \U0001f999.safetensors",
    "model-00003-of-00003.safetensors": long,
}
for f in os.listdir(src):
    if f == "model.safetensors.index.json":
        idx = json.load(open(os.path.join(src, f)))
        idx["weight_map"] = {k: names[v] for k, v in idx["weight_map"].items()}
        json.dump(idx, open(os.path.join(dst, f), "w", encoding="utf-8"), ensure_ascii=False)
    else:
        shutil.copyfile(os.path.join(src, f), os.path.join(dst, names.get(f, f)))
PY
[ "$(ls "$pristine" | awk 'length($0) == 255' | wc -l)" -eq 1 ] && ok "a 255-byte shard name" ||
    bad "no 255-byte shard name"

run 0 "the renamed checkpoint converts" "$AIRLLM_SPLIT" -q "$pristine" "$SCRATCH/plain"
run 0 "and verifies" "$AIRLLM_VERIFY" -q --against "$pristine" "$SCRATCH/plain"

n=1 steps=0 lost=0 resumed=0
while :; do
    hf="$SCRATCH/hf" out="$SCRATCH/out"
    rm -rf "$hf" "$out"
    cp -r "$pristine" "$hf"
    (AIRLLM_FAULT_STEP=$n "$AIRLLM_SPLIT" -q --delete-original "$hf" "$out" >/dev/null 2>"$SCRATCH/err" &
        wait $!) 2>/dev/null
    rc=$?
    [ $rc -eq 0 ] && break
    if [ $rc -ne 137 ]; then
        bad "step $n: exit $rc, expected a kill: $(head -c 300 "$SCRATCH/err")"
        break
    fi
    steps=$n
    for f in "$hf"/*; do
        [ -e "$f" ] || continue
        cmp -s "$f" "$pristine/$(basename "$f")" || lost=$((lost + 1))
    done
    if "$AIRLLM_SPLIT" -q --delete-original "$hf" "$out" 2>"$SCRATCH/err" &&
        "$AIRLLM_VERIFY" -q --against "$pristine" "$out" 2>>"$SCRATCH/err"; then
        resumed=$((resumed + 1))
    else
        bad "resume after a kill at step $n: $(head -c 400 "$SCRATCH/err")"
    fi
    ls "$hf"/*.safetensors >/dev/null 2>&1 && bad "step $n: shards left after the resume"
    n=$((n + 1))
    [ $n -gt 300 ] && { bad "more than 300 steps?"; break; }
done
[ $steps -ge 10 ] && ok "killed at each of $steps steps" || bad "only $steps steps"
[ $lost -eq 0 ] && ok "no source byte changed at any step" || bad "$lost files changed"
[ $resumed -eq $steps ] && ok "every resumed run verifies byte-exact ($resumed)" ||
    bad "$resumed of $steps resumes verified"

# A torn last line (a crash mid-append) is ignored and cut off; a damaged
# complete line is refused, never read as another record.
rm -rf "$SCRATCH/hf" "$SCRATCH/out"
cp -r "$pristine" "$SCRATCH/hf"
J="$SCRATCH/out/.airllm-split/journal"
(J="$J" AIRLLM_FAULT_HOOK='grep -q "^deleted " "$J" 2>/dev/null && kill -9 $PPID; :' \
    "$AIRLLM_SPLIT" -q --delete-original "$SCRATCH/hf" "$SCRATCH/out" >/dev/null 2>&1 &
    wait $!) 2>/dev/null
cp "$J" "$SCRATCH/journal.good"
sed -i 's/^unit 10:embed.airc /unit 11:embed.airc /' "$J"
hf_before=$(tree_digest "$SCRATCH/hf")
run 1 "a damaged journal line is refused" "$AIRLLM_SPLIT" -q --delete-original "$SCRATCH/hf" "$SCRATCH/out"
expect_err "line 2 is not a valid record" "the message names the journal line"
[ "$(tree_digest "$SCRATCH/hf")" = "$hf_before" ] && ok "nothing deleted after the refusal" ||
    bad "HF_DIR changed after the refusal"
cp "$SCRATCH/journal.good" "$J"
printf 'unit 16:layer.00001.ai' >>"$J"
run 0 "a torn last line is ignored" "$AIRLLM_SPLIT" -q --delete-original "$SCRATCH/hf" "$SCRATCH/out"
run 0 "and the run verifies" "$AIRLLM_VERIFY" -q --against "$pristine" "$SCRATCH/out"

# A format 1 journal (as airllm-split 1 wrote it: "deleted NAME", "unit
# NAME SIZE SHA", names bare) of a run killed after deleting the shard
# whose name has spaces.
rm -rf "$SCRATCH/hf" "$SCRATCH/out"
cp -r "$pristine" "$SCRATCH/hf"
J="$SCRATCH/out/.airllm-split/journal"
(J="$J" AIRLLM_FAULT_HOOK='grep -q "^deleted " "$J" 2>/dev/null && kill -9 $PPID; :' \
    "$AIRLLM_SPLIT" -q --delete-original "$SCRATCH/hf" "$SCRATCH/out" >/dev/null 2>&1 &
    wait $!) 2>/dev/null
[ $? -eq 137 ] && ok "interrupted after the first deletion" || bad "not interrupted after a deletion"
[ ! -e "$SCRATCH/hf/model 00001 of 3.safetensors" ] && ok "the shard with spaces is deleted" ||
    bad "the shard with spaces is still there"
python3 - "$J" <<'PY'
import sys
path = sys.argv[1]
data = open(path, "rb").read()
magic = b"airllm-split journal 2\n"
assert data.startswith(magic), data[:40]
out = []
for line in data[len(magic):].split(b"\n")[:-1]:
    kind, rest = line.split(b" ", 1)
    fields = []
    while rest:
        head, _, tail = rest.partition(b" ")
        if b":" in head and head.split(b":", 1)[0].isdigit() and kind != b"qstats" or \
           (kind == b"qstats" and len(fields) == 4):
            n, _, after = rest.partition(b":")
            n = int(n)
            fields.append(after[:n])
            rest = after[n + 1:]
        else:
            fields.append(head)
            rest = tail
    if kind in (b"unit", b"source"):
        out.append(b" ".join([kind] + fields[:3]))
    elif kind == b"deleted":
        out.append(b"deleted " + fields[0])
open(path, "wb").write(b"".join(l + b"\n" for l in out))
PY
grep -q "^deleted model 00001 of 3.safetensors$" "$J" && ok "the journal is now in format 1" ||
    bad "format 1 journal not made: $(head -c 300 "$J")"
run 0 "a format 1 journal with a spaced name resumes" \
    "$AIRLLM_SPLIT" -q --delete-original "$SCRATCH/hf" "$SCRATCH/out"
run 0 "and verifies byte-exact" "$AIRLLM_VERIFY" -q --against "$pristine" "$SCRATCH/out"
finish
