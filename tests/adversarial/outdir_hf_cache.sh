#!/usr/bin/env bash
# --delete-original on a Hugging Face cache snapshot. Its files are links
# into ../../blobs/, where the bytes are: deleting only the links freed no
# space. The blob goes too, after the same verification, unless another
# snapshot of the repo links to it. Killed at every durable step: no byte
# is lost, the rerun finishes, and no blob or dangling link is left behind.
. "$(dirname "$0")/../testlib.sh"

src="$MODELS/stories260K-bf16-sharded"

# blobs_intact REPO: every blob still there holds the bytes its name hashes.
blobs_intact() {
    local b
    for b in "$1"/blobs/*; do
        [ -e "$b" ] || continue
        [ "$(sha256sum "$b" | cut -c1-64)" = "$(basename "$b")" ] || return 1
    done
}

# --- the space is freed
repo="$SCRATCH/hub/models--t--stories"
make_cache "$src" "$repo" r1
snap="$repo/snapshots/r1"
run 0 "--delete-original on a cache snapshot" "$AIRLLM_SPLIT" -q --delete-original "$snap" "$SCRATCH/out"
run 0 "the output verifies" "$AIRLLM_VERIFY" -q --against "$src" "$SCRATCH/out"
left=$(ls -A "$repo/blobs")
[ -z "$left" ] && ok "every converted blob is deleted: the space is freed" || bad "blobs left: $left"
left=$(ls -A "$snap")
[ -z "$left" ] && ok "and every link in the snapshot" || bad "links left: $left"
[ -f "$repo/refs/main" ] && ok "nothing else in the cache is touched" || bad "refs/main gone"

# --- a blob another snapshot links to is kept
repo2="$SCRATCH/hub2/models--t--stories"
make_cache "$src" "$repo2" r1 r2
run 0 "--delete-original on one of two snapshots sharing blobs" \
    "$AIRLLM_SPLIT" --delete-original "$repo2/snapshots/r1" "$SCRATCH/out2"
expect_err "links to it too" "says why a blob is kept"
[ -z "$(ls -A "$repo2/snapshots/r1")" ] && ok "the snapshot's links are gone" || bad "links left in r1"
[ "$(ls "$repo2/blobs" | wc -l)" -eq "$(ls "$src" | wc -l)" ] && blobs_intact "$repo2" &&
    ok "every shared blob is kept, intact" || bad "shared blobs deleted"
run 0 "the other snapshot still converts" "$AIRLLM_SPLIT" -q "$repo2/snapshots/r2" "$SCRATCH/out2b"
run 0 "and verifies" "$AIRLLM_VERIFY" -q --against "$src" "$SCRATCH/out2b"

# --- killed at every durable step, then rerun
n=1
steps=0
lost=0
resumed=0
while :; do
    rm -rf "$SCRATCH/k"
    r="$SCRATCH/k/models--t--stories"
    make_cache "$src" "$r" r1
    (AIRLLM_FAULT_STEP=$n "$AIRLLM_SPLIT" -q --delete-original "$r/snapshots/r1" "$SCRATCH/k/out" \
        >/dev/null 2>"$SCRATCH/err" & wait $!) 2>/dev/null
    rc=$?
    [ $rc -eq 0 ] && break
    if [ $rc -ne 137 ]; then
        bad "step $n: exit $rc, expected a kill: $(head -c 300 "$SCRATCH/err")"
        break
    fi
    steps=$n
    blobs_intact "$r" || lost=$((lost + 1))
    if "$AIRLLM_SPLIT" -q --delete-original "$r/snapshots/r1" "$SCRATCH/k/out" 2>"$SCRATCH/err" &&
        "$AIRLLM_VERIFY" -q --against "$src" "$SCRATCH/k/out" 2>>"$SCRATCH/err" &&
        [ -z "$(ls -A "$r/blobs" "$r/snapshots/r1" | grep -v ':$' | grep .)" ]; then
        resumed=$((resumed + 1))
    else
        bad "step $n: rerun: $(head -c 300 "$SCRATCH/err") left: $(ls -A "$r/blobs" "$r/snapshots/r1")"
    fi
    n=$((n + 1))
    [ $n -gt 500 ] && { bad "more than 500 steps?"; break; }
done
[ $steps -ge 10 ] && ok "killed at each of $steps steps" || bad "only $steps steps"
[ $lost -eq 0 ] && ok "no blob was ever corrupted" || bad "$lost kills left a corrupted blob"
[ $resumed -eq $steps ] && ok "every rerun verifies and leaves no blob or dangling link ($resumed)" ||
    bad "$resumed of $steps reruns were clean"
finish
