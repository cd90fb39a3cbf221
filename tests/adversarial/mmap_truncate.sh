#!/usr/bin/env bash
# Zero-copy streaming maps each streamed unit file and computes on the page
# cache in place. A file that shrinks under its mapping must be a clean
# error naming the file (exit 1), never a SIGBUS crash: truncated right
# after it is mapped (the fault-in or the header read finds it), after its
# load finished but before its deferred XXH3 check (the guarded hash), and,
# with --verify-load=off, before the model computes on it (the SIGBUS
# handler). AIRLLM_FAULT_HOOK runs at each load's steps ("mapped FILE",
# "ready FILE"), so each case happens at a known point. The mapped stream
# must also give exactly the tokens and logits of the copying one
# (AIRLLM_STREAM_READ=pread) and of the resident run.
. "$(dirname "$0")/../testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
: "${AIRLLM_QUANT:?set AIRLLM_QUANT to the airllm-quant binary}"
R=$AIRLLM_RUN
S=$SCRATCH
"$AIRLLM_SPLIT" -q "$MODELS/stories260K" "$S/raw"
"$AIRLLM_QUANT" -q "$MODELS/stories260K" "$S/nf4"
U=layer.00001.airc

# Same tokens and logits: mapped stream, copied stream, resident.
for d in raw nf4; do
    for how in "map --mem-budget 0" "pread --mem-budget 0" "res" "map --mem-budget 0 --no-prefetch"; do
        set -- $how
        tag=$1
        shift
        [ "$tag" = pread ] && export AIRLLM_STREAM_READ=pread || unset AIRLLM_STREAM_READ
        "$R" -q --ids 1,2,3 -n 6 --dump-logits "$S/$d.$tag$#" "$@" "$S/$d" >"$S/$d.$tag$#.out" ||
            bad "$d $how: exit $?"
    done
    unset AIRLLM_STREAM_READ
    for v in pread2 res0 map3; do
        cmp -s "$S/$d.map2" "$S/$d.$v" && cmp -s "$S/$d.map2.out" "$S/$d.$v.out" &&
            ok "$d: mapped stream = $v (tokens and logits)" || bad "$d: mapped stream differs from $v"
    done
done

# cut STEP DESC ARGS...: truncates $U to its first page when the load
# reaches STEP, and expects a clean exit 1 naming the file
cut() {
    local step=$1 desc=$2
    shift 2
    rm -rf "$S/c" && cp -r "$S/raw" "$S/c"
    rm -f "$S/hooked"
    AIRLLM_FAULT_HOOK='[ "$2" = "'"$step"'" ] || exit 0; [ -e "'"$S/hooked"'" ] && exit 0
        touch "'"$S/hooked"'"; truncate -s 4096 "'"$S/c/$U"'"' \
        run 1 "$desc: exit 1" "$R" -q --ids 1,2,3 -n 4 --mem-budget 0 "$@" "$S/c"
    [ -e "$S/hooked" ] && ok "$desc: the file was cut at \"$step\"" ||
        bad "$desc: the hook never ran at \"$step\" (no such load step?)"
    expect_err "$S/c/$U" "$desc: the message names the file"
    expect_err "truncated or changed" "$desc: the message says why"
    grep -q "Bus error\|core dumped\|AddressSanitizer" "$S/last.err" &&
        bad "$desc: crashed: $(head -c 300 "$S/last.err")" || ok "$desc: no crash"
    [ -s "$S/last.out" ] && bad "$desc: printed tokens" || ok "$desc: printed nothing"
}
cut "mapped $U" "cut after mapping (fast: its check block)"
cut "mapped $U" "cut after mapping (off: the fault-in)" --verify-load=off
cut "ready $U" "cut before the deferred XXH3 check" --verify-load=fast
cut "ready $U" "cut before compute, unchecked (SIGBUS handler)" --verify-load=off
cut "ready $U" "cut before compute, no prefetch" --verify-load=off --no-prefetch
cut "mapped $U" "cut after mapping (full)" --verify-load=full
finish
