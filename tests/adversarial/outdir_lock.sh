#!/usr/bin/env bash
# One writer per OUT_DIR. airllm-split and airllm-quant hold an exclusive
# flock() on OUT_DIR/.airllm-split/lock; airllm-verify and airllm-run a
# shared one. A writer is held deterministically at its third durable step
# with AIRLLM_FAULT_SIGNAL=STOP (it SIGSTOPs itself there, lock held) while
# the others try; then it is continued and must finish and verify.
. "$(dirname "$0")/../testlib.sh"

src="$MODELS/stories260K-bf16-sharded"
hf="$SCRATCH/hf"
cp -a "$src" "$hf"

# start_held TOOL OUT [ARGS]: TOOL HF OUT in the background, stopped at its
# third durable step; sets HELD (its pid). Waits for the stop itself (or an
# exit), not for a guessed time.
start_held() {
    local tool=$1 out=$2 state i
    shift 2
    AIRLLM_FAULT_SIGNAL=STOP AIRLLM_FAULT_STEP=3 "$tool" -q "$@" "$hf" "$out" 2>"$SCRATCH/held.err" &
    HELD=$!
    for i in $(seq 1 1200); do
        state=$(sed 's/.*) //' "/proc/$HELD/stat" 2>/dev/null | cut -d' ' -f1)
        case "$state" in T | t | Z | "") break ;; esac
        sleep 0.05
    done
    [ "$state" = T ] || [ "$state" = t ]
}

# finish_held DESC OUT: continues the held writer; it must succeed, leave no
# state folder, and its output must verify against the source.
finish_held() {
    kill -CONT "$HELD"
    wait "$HELD"
    local rc=$?
    [ $rc -eq 0 ] && ok "$1: the held writer finishes" || bad "$1: held writer exit $rc: $(head -c 400 "$SCRATCH/held.err")"
    [ ! -e "$2/.airllm-split" ] && ok "$1: no lock or journal left" || bad "$1: $2/.airllm-split left: $(ls -A "$2/.airllm-split")"
    run 0 "$1: the survivor's output verifies" "$AIRLLM_VERIFY" -q --against "$src" "$2"
}

# --- split || split, split || quant --force, verify || split, run || split
out="$SCRATCH/out"
if start_held "$AIRLLM_SPLIT" "$out"; then
    ok "a split stopped at a durable step, holding its lock"
    before=$(tree_digest "$out")
    msg="OUT_DIR is being written by another airllm-split (pid $HELD)"
    run 1 "split || split: the second split fails at once" "$AIRLLM_SPLIT" -q "$hf" "$out"
    expect_err "$msg" "split || split: names the writer and its pid"
    run 1 "split || quant --force: quant fails" "$AIRLLM_QUANT" -q --force "$hf" "$out"
    expect_err "$msg" "split || quant --force: names the writer"
    run 1 "split || split --force with other options fails" "$AIRLLM_SPLIT" -q --force --compress zstd "$hf" "$out"
    expect_err "$msg" "split || split --force: names the writer"
    [ "$before" = "$(tree_digest "$out")" ] && ok "the losers touched nothing" || bad "OUT_DIR changed under the writer"
    run 1 "verify || split: verify fails" "$AIRLLM_VERIFY" "$out"
    expect_err "$msg" "verify || split: says it is being written (not a mismatch)"
    run 1 "verify --json || split" "$AIRLLM_VERIFY" --json "$out"
    grep -qF "being written by another airllm-split" "$SCRATCH/last.out" && ok "verify --json says so too" ||
        bad "verify --json: $(head -c 300 "$SCRATCH/last.out")"
    run 1 "run || split: airllm-run fails" "$AIRLLM_RUN" --ids 1 -n 2 "$out"
    expect_err "$msg" "run || split: says it is being written"
    finish_held "split || others" "$out"
else
    bad "the split did not stop at its third step: $(head -c 300 "$SCRATCH/held.err")"
    kill -9 "$HELD" 2>/dev/null
    wait "$HELD" 2>/dev/null
fi

# --- quant || split --force: the message names airllm-quant
qout="$SCRATCH/qout"
if start_held "$AIRLLM_QUANT" "$qout"; then
    before=$(tree_digest "$qout")
    run 1 "quant || split --force: split fails" "$AIRLLM_SPLIT" -q --force "$hf" "$qout"
    expect_err "OUT_DIR is being written by another airllm-quant (pid $HELD)" "names airllm-quant and its pid"
    [ "$before" = "$(tree_digest "$qout")" ] && ok "the loser touched nothing" || bad "OUT_DIR changed under the quant"
    kill -CONT "$HELD"
    wait "$HELD" && ok "the held quant finishes" || bad "held quant: $(head -c 300 "$SCRATCH/held.err")"
    run 0 "its output verifies" "$AIRLLM_VERIFY" -q --against "$src" "$qout"
else
    bad "the quant did not stop at its third step: $(head -c 300 "$SCRATCH/held.err")"
    kill -9 "$HELD" 2>/dev/null
    wait "$HELD" 2>/dev/null
fi

# --- kill -9 while holding the lock, then a rerun: no stale lock
kout="$SCRATCH/kout"
(AIRLLM_FAULT_STEP=12 "$AIRLLM_SPLIT" -q "$hf" "$kout" 2>/dev/null &
    echo $! >"$SCRATCH/killed.pid"
    wait $!) 2>/dev/null
killed=$(cat "$SCRATCH/killed.pid")
read -r lpid ltool <"$kout/.airllm-split/lock" 2>/dev/null
[ "${lpid:-}" = "$killed" ] && [ "${ltool:-}" = airllm-split ] &&
    ok "the killed run's lock file records it (pid $killed)" || bad "lock file: '${lpid:-} ${ltool:-}', killed pid $killed"
run 1 "verify after the kill: incomplete" "$AIRLLM_VERIFY" "$kout"
expect_err "interrupted airllm-split run" "reported as interrupted, not as being written"
# A reader holding the lock (flock(1), as airllm-verify would) keeps a
# writer out, with a message saying so.
run 1 "a writer while a reader holds the lock fails" flock -s "$kout/.airllm-split/lock" "$AIRLLM_SPLIT" -q "$hf" "$kout"
expect_err "OUT_DIR is in use by airllm-run or airllm-verify" "says a reader has it"
run 0 "the rerun resumes: the dead run's lock is not stale" "$AIRLLM_SPLIT" --json "$hf" "$kout"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["units_kept"]>=1, d' "$SCRATCH/last.out" &&
    ok "it kept the finished units" || bad "resume kept nothing: $(head -c 300 "$SCRATCH/last.out")"
[ ! -e "$kout/.airllm-split" ] && ok "no lock left after completion" || bad "$kout/.airllm-split left"
run 0 "and verifies" "$AIRLLM_VERIFY" -q --against "$src" "$kout"

# --- refused runs leave no trace: no lock folder, no new OUT_DIR
run 1 "another input into a finished OUT_DIR is refused" "$AIRLLM_SPLIT" -q "$MODELS/stories260K" "$kout"
[ ! -e "$kout/.airllm-split" ] && ok "the refused run left no lock folder" || bad "lock folder left by a refused run"
run 0 "the finished OUT_DIR still verifies" "$AIRLLM_VERIFY" -q "$kout"
run 1 "a bad HF_DIR is refused" "$AIRLLM_SPLIT" -q "$SCRATCH/nonexistent" "$SCRATCH/new/a/b"
[ ! -e "$SCRATCH/new" ] && ok "the OUT_DIR it would have created does not exist" || bad "left: $(find "$SCRATCH/new")"
finish
