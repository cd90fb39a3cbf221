#!/usr/bin/env bash
# Faults: the split is killed (SIGKILL) at every durable step, with and
# without --delete-original, then resumed; it is killed at random moments;
# the disk fills up. After each: nothing is lost, the resumed output
# verifies byte-exact against a pristine copy of the source, and an
# interrupted output is reported incomplete.
. "$(dirname "$0")/testlib.sh"

pristine="$MODELS/stories260K-bf16-sharded"

# kill_at_every_step MODE: MODE is "keep" or "delete"
kill_at_every_step() {
    local mode=$1 opts="" n=1 steps=0 lost=0 incomplete_ok=0 resumed_ok=0
    [ "$mode" = delete ] && opts="--delete-original"
    while :; do
        local hf="$SCRATCH/hf" out="$SCRATCH/out"
        rm -rf "$hf" "$out"
        cp -a "$pristine" "$hf"
        # In the background, so that the shell does not report each kill.
        (AIRLLM_FAULT_STEP=$n "$AIRLLM_SPLIT" -q $opts "$hf" "$out" >/dev/null 2>"$SCRATCH/err" &
            wait $!) 2>/dev/null
        local rc=$?
        if [ $rc -eq 0 ]; then break; fi
        if [ $rc -ne 137 ]; then
            bad "$mode: step $n: exit $rc, expected a kill: $(head -c 300 "$SCRATCH/err")"
            break
        fi
        steps=$n
        # No byte may be missing from both places: every source file still
        # present is intact, and what was deleted must be recoverable from
        # the output (checked by the resume + verify --against below).
        for f in "$hf"/*; do
            [ -e "$f" ] || continue
            cmp -s "$f" "$pristine/$(basename "$f")" || lost=$((lost + 1))
        done
        if [ ! -f "$out/manifest.json" ]; then
            "$AIRLLM_VERIFY" "$out" >/dev/null 2>&1 && lost=$((lost + 1)) || incomplete_ok=$((incomplete_ok + 1))
        fi
        if "$AIRLLM_SPLIT" -q $opts "$hf" "$out" 2>"$SCRATCH/err" &&
            "$AIRLLM_VERIFY" -q --against "$pristine" "$out" 2>>"$SCRATCH/err"; then
            resumed_ok=$((resumed_ok + 1))
        else
            bad "$mode: resume after a kill at step $n: $(head -c 400 "$SCRATCH/err")"
        fi
        if [ "$mode" = delete ] && ls "$hf"/*.safetensors >/dev/null 2>&1; then
            bad "$mode: step $n: shards left after the resumed --delete-original run"
        fi
        n=$((n + 1))
        [ $n -gt 500 ] && { bad "$mode: more than 500 steps?"; break; }
    done
    [ $steps -ge 10 ] && ok "$mode: killed at each of $steps steps" || bad "$mode: only $steps steps"
    [ $lost -eq 0 ] && ok "$mode: no source byte changed or lost at any step" || bad "$mode: $lost files changed/lost"
    [ $resumed_ok -eq $steps ] && ok "$mode: every resumed run verifies byte-exact ($resumed_ok)" || bad "$mode: $resumed_ok of $steps resumes verified"
    echo "info: $mode: $incomplete_ok interrupted outputs reported incomplete"
}
kill_at_every_step keep
kill_at_every_step delete

# A resumed run keeps the units that were finished.
rm -rf "$SCRATCH/hf" "$SCRATCH/out"
cp -a "$pristine" "$SCRATCH/hf"
(AIRLLM_FAULT_STEP=12 "$AIRLLM_SPLIT" -q "$SCRATCH/hf" "$SCRATCH/out" 2>/dev/null & wait $!) 2>/dev/null
run 1 "interrupted output is reported incomplete" "$AIRLLM_VERIFY" "$SCRATCH/out"
expect_err "incomplete" "verify says incomplete"
run 0 "resume" "$AIRLLM_SPLIT" --json "$SCRATCH/hf" "$SCRATCH/out"
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["units_kept"]>=1, d' "$SCRATCH/last.out"; then
    ok "resume kept finished units"; else bad "resume kept nothing: $(cat "$SCRATCH/last.out")"; fi
run 1 "a different input into the same OUT_DIR is refused" \
    "$AIRLLM_SPLIT" -q "$MODELS/stories260K" "$SCRATCH/out"
expect_err "already holds a complete conversion" "refusal names the reason"

# Random SIGKILLs from outside, on a synthetic checkpoint large enough
# (about 100 MB in 3 shards) for a kill to land mid-run.
big="$SCRATCH/big"
python3 - "$big" <<'PY'
import json, os, random, struct, sys
out = sys.argv[1]; os.makedirs(out)
H, I, L, V = 512, 1408, 8, 1024
rng = random.Random(7)
def tensors_of_layer(l):
    p = f"model.layers.{l}."
    return [(p + "input_layernorm.weight", [H]), (p + "post_attention_layernorm.weight", [H])] + \
        [(p + f"self_attn.{x}_proj.weight", [H, H]) for x in "qkvo"] + \
        [(p + "mlp.gate_proj.weight", [I, H]), (p + "mlp.up_proj.weight", [I, H]),
         (p + "mlp.down_proj.weight", [H, I])]
groups = [[("model.embed_tokens.weight", [V, H])] + tensors_of_layer(0) + tensors_of_layer(1) + tensors_of_layer(2),
          [t for l in range(3, 6) for t in tensors_of_layer(l)],
          [t for l in range(6, 8) for t in tensors_of_layer(l)] + [("model.norm.weight", [H]), ("lm_head.weight", [V, H])]]
weight_map = {}
pool = rng.randbytes(1 << 20)
for k, group in enumerate(groups):
    name = f"model-{k+1:05d}-of-{len(groups):05d}.safetensors"
    header, off = {}, 0
    for t, shape in sorted(group):
        n = 4
        for d in shape: n *= d
        header[t] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + n]}
        off += n; weight_map[t] = name
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(out, name), "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        left = off
        while left:
            n = min(left, len(pool)); s = rng.randrange(len(pool) - n + 1)
            f.write(pool[s:s + n]); left -= n
json.dump({"metadata": {}, "weight_map": weight_map}, open(os.path.join(out, "model.safetensors.index.json"), "w"))
json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
           "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": 8,
           "num_key_value_heads": 8, "vocab_size": V, "tie_word_embeddings": False},
          open(os.path.join(out, "config.json"), "w"))
PY
pristine_big="$SCRATCH/big.pristine"
cp -a "$big" "$pristine_big"
rm -rf "$SCRATCH/rout"
kills=0
for i in $(seq 1 12); do
    "$AIRLLM_SPLIT" -q --delete-original --compress zstd "$big" "$SCRATCH/rout" >/dev/null 2>&1 &
    pid=$!
    sleep "0.$((RANDOM % 4))$((RANDOM % 10))"
    kill -9 $pid 2>/dev/null && kills=$((kills + 1))
    wait $pid 2>/dev/null
done
run 0 "resume after $kills random kills" "$AIRLLM_SPLIT" -q --delete-original --compress zstd "$big" "$SCRATCH/rout"
run 0 "randomly killed output verifies byte-exact" "$AIRLLM_VERIFY" --against "$pristine_big" "$SCRATCH/rout"

# The disk fills up: RLIMIT_FSIZE makes writes fail with EFBIG mid-run.
rm -rf "$SCRATCH/hf" "$SCRATCH/full"
cp -a "$pristine" "$SCRATCH/hf"
before=$(tree_digest "$SCRATCH/hf")
run 1 "split with a 80 KiB file size limit fails cleanly" \
    bash -c "ulimit -f 80; exec \"$AIRLLM_SPLIT\" --delete-original \"$SCRATCH/hf\" \"$SCRATCH/full\""
expect_err "write error" "error names the write failure"
[ ! -f "$SCRATCH/full/manifest.json" ] && ok "no manifest after a failed write" || bad "manifest written after a failed write"
ls "$SCRATCH/full"/.*.tmp >/dev/null 2>&1 && bad "temporary files left behind" || ok "no temporary files left behind"
run 0 "resume once space is back" "$AIRLLM_SPLIT" -q --delete-original "$SCRATCH/hf" "$SCRATCH/full"
run 0 "output verifies after the disk-full episode" "$AIRLLM_VERIFY" --against "$pristine" "$SCRATCH/full"

# A filesystem that is too small is refused up front, before any work.
mnt="$SCRATCH/tiny"
mkdir -p "$mnt"
if mount -t tmpfs -o size=256k tmpfs "$mnt" 2>/dev/null; then
    run 1 "too little free space is refused up front" "$AIRLLM_SPLIT" "$pristine" "$mnt/out"
    expect_err "not enough free space" "error says not enough free space"
    [ ! -e "$mnt/out" ] && ok "nothing created on the full filesystem" || bad "OUT_DIR created"
    umount "$mnt"
else
    echo "SKIP: cannot mount a tmpfs here (not root?): free-space check not exercised"
fi
finish
