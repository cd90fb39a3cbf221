#!/usr/bin/env bash
# Issue 18: the free-space check. airllm-quant demanded the unquantized
# size; airllm-split --delete-original demanded the whole output although
# each source is deleted as soon as its units are written, which defeats the
# option on a full disk. The plan now sizes each unit by the layout the
# writer gives it (quantized sizes exact, padding included) and, with
# --delete-original on the same filesystem, needs only the peak of (bytes
# written - source bytes deleted) in the order the run works.
. "$(dirname "$0")/../testlib.sh"

small="$MODELS/stories260K"
# jget FILE KEY: a number from a JSON object
jget() { python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))[sys.argv[2]]))' "$1" "$2"; }
unit_bytes() { find "$1" -maxdepth 1 -name '*.airc' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }

# The quantized plan is the quantized output, byte for byte.
for opts in "" "-t int8 -b 32 --double-quant" "-t fp4 -b 4096 --include embed,lm_head"; do
    rm -rf "$SCRATCH/q"
    run 0 "quant $opts: dry run" "$AIRLLM_QUANT" -n --json $opts "$small" "$SCRATCH/q"
    cp "$SCRATCH/last.out" "$SCRATCH/q.json"
    run 0 "quant $opts: run" "$AIRLLM_QUANT" -q $opts "$small" "$SCRATCH/q"
    planned=$(jget "$SCRATCH/q.json" disk_written 2>/dev/null)
    got=$(unit_bytes "$SCRATCH/q")
    [ "${planned:-x}" = "$got" ] && ok "quant $opts: planned unit bytes = written ($got)" ||
        bad "quant $opts: planned ${planned:-nothing}, wrote $got"
done
"$AIRLLM_SPLIT" -n --json "$small" "$SCRATCH/s" >"$SCRATCH/s.json"
"$AIRLLM_QUANT" -n --json "$small" "$SCRATCH/q2" >"$SCRATCH/q.json"
split_need=$(jget "$SCRATCH/s.json" disk_needed)
quant_need=$(jget "$SCRATCH/q.json" disk_needed)
[ "$quant_need" -lt "$split_need" ] && ok "quant needs less than split ($quant_need < $split_need)" ||
    bad "quant needs $quant_need, split $split_need"

# --delete-original, a checkpoint in several shards: the need is the peak,
# well under the total.
big="$SCRATCH/big"
python3 "$SRC_DIR/tests/make_llama_checkpoint.py" "$big" --hidden 256 --intermediate 704 \
    --layers 8 --vocab 1024 --shards 8 --seed 3
run 0 "--delete-original dry run" "$AIRLLM_SPLIT" -n --json --delete-original "$big" "$SCRATCH/bo"
cp "$SCRATCH/last.out" "$SCRATCH/d.json"
peak=$(jget "$SCRATCH/d.json" disk_needed)
total=$(jget "$SCRATCH/d.json" disk_written 2>/dev/null || echo 0)
[ "$total" -gt 0 ] && [ $((peak * 2)) -lt "$total" ] && ok "peak need $peak is under half of the $total written" ||
    bad "peak need $peak, $total written"
run 0 "--delete-original dry run, text" "$AIRLLM_SPLIT" -n --delete-original "$big" "$SCRATCH/bo"
grep -q "written in all" "$SCRATCH/last.out" && ok "the text plan gives the total and the peak" ||
    bad "text plan: $(tail -n 2 "$SCRATCH/last.out")"
run 0 "without --delete-original the need is the total" "$AIRLLM_SPLIT" -n --json "$big" "$SCRATCH/bo"
[ "$(jget "$SCRATCH/last.out" disk_needed)" -gt "$total" ] && ok "plain need covers every unit" ||
    bad "plain need $(jget "$SCRATCH/last.out" disk_needed) < $total"

# On filesystems that small. Sources and output share the filesystem for
# --delete-original; the run really happens, so a peak planned too low
# would fail on ENOSPC.
mnt="$SCRATCH/mnt"
mkdir -p "$mnt"
trap 'umount "$mnt" 2>/dev/null' EXIT
if mount -t tmpfs -o size=64m tmpfs "$mnt" 2>/dev/null; then
    umount "$mnt"
    ck=$(du -sb --apparent-size "$big" | cut -f1)
    size=$(( (ck + 4096 * 16 + (peak + total) / 2) / 4096 * 4096 ))
    mount -t tmpfs -o size=$size tmpfs "$mnt"
    cp -r "$big" "$mnt/hf"
    cp -r "$big" "$SCRATCH/big.pristine"
    run 1 "plain split is refused: the whole output does not fit" "$AIRLLM_SPLIT" "$mnt/hf" "$mnt/out"
    expect_err "not enough free space" "refused up front"
    run 0 "--delete-original fits: sources are deleted as it goes" \
        "$AIRLLM_SPLIT" -q --delete-original "$mnt/hf" "$mnt/out"
    run 0 "and its output verifies" "$AIRLLM_VERIFY" -q --against "$SCRATCH/big.pristine" "$mnt/out"
    umount "$mnt"

    size=$(( (quant_need + split_need) / 2 / 4096 * 4096 ))
    mount -t tmpfs -o size=$size tmpfs "$mnt"
    run 1 "split into $size bytes is refused" "$AIRLLM_SPLIT" "$small" "$mnt/s"
    run 0 "quant into $size bytes fits" "$AIRLLM_QUANT" -q "$small" "$mnt/q"
    run 0 "and verifies" "$AIRLLM_VERIFY" -q --against "$small" "$mnt/q"
    umount "$mnt"
else
    echo "SKIP: cannot mount a tmpfs here (not root?): small filesystems not exercised"
fi
finish
