#!/usr/bin/env bash
# Feeds airllm-split one broken checkpoint per defect (made by
# make_bad_inputs.py) and checks that every one is refused cleanly: exit
# status exactly 1, a non-empty stderr that names the problem (each line of
# the directory's expect.txt, compared without regard to case), no crash or
# sanitizer report, the source files untouched, and no manifest.json written.
# Directories named good* must convert (exit 0, manifest.json written).
#
# usage: cli_bad_input.sh PATH/TO/airllm-split SCRATCH_DIR
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 AIRLLM_SPLIT SCRATCH_DIR" >&2
    exit 2
fi
bin=$1
scratch=$2
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x "$bin" ]; then
    echo "$0: $bin is not an executable" >&2
    exit 2
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
mkdir -p "$scratch" || exit 2
# Absolute, canonical paths, so that the path the tool prints is the one we
# strip from its messages below.
scratch=$(cd "$scratch" && pwd -P)
inputs=$scratch/inputs
outs=$scratch/out
logs=$scratch/logs
rm -rf "$inputs" "$outs" "$logs"
mkdir -p "$outs" "$logs" || exit 2
if ! python3 "$here/make_bad_inputs.py" "$inputs"; then
    echo "FAIL make_bad_inputs.py"
    echo "0 passed, 1 failed"
    exit 1
fi

passed=0
failed=0

# Checksums of every file under a directory, with relative names, so that
# any change, deletion or new file shows up as a difference.
sums() {
    (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}

fail() { # case, reason
    echo "FAIL $1: $2"
    if [ -s "$logs/$1.err" ]; then
        sed -n '1,5s/^/    stderr: /p' "$logs/$1.err"
    fi
    failed=$((failed + 1))
}

# Usage errors exit 2.
"$bin" >"$logs/usage.out" 2>"$logs/usage.err"
rc=$?
if [ $rc -eq 2 ] && [ -s "$logs/usage.err" ]; then
    echo "PASS usage (exit 2)"
    passed=$((passed + 1))
else
    fail usage "no arguments: exit $rc (want 2) or empty stderr"
fi

for dir in "$inputs"/*/; do
    dir=${dir%/}
    name=$(basename "$dir")
    out=$outs/$name
    before=$(sums "$dir")
    timeout 120 "$bin" "$dir" "$out" >"$logs/$name.out" 2>"$logs/$name.err"
    rc=$?
    err=$(cat "$logs/$name.err")
    after=$(sums "$dir")
    reason=""

    if [ "$before" != "$after" ]; then
        reason="source files changed"
    elif [[ $err == *Segmentation* || $err == *AddressSanitizer* ||
        $err == *LeakSanitizer* || $err == *"runtime error:"* ]]; then
        reason="crash or sanitizer report"
    elif [ $rc -eq 124 ]; then
        reason="timed out"
    elif [[ $name == good* ]]; then
        if [ $rc -ne 0 ]; then
            reason="exit $rc, want 0"
        elif [ ! -f "$out/manifest.json" ]; then
            reason="no manifest.json in the output"
        fi
    else
        # Directory names echo their defect, so strip the directory's path
        # before matching: only the tool's own words may satisfy expect.txt.
        shown=${err//"$dir"/<dir>}
        shown=${shown,,}
        if [ $rc -ne 1 ]; then
            reason="exit $rc, want 1"
        elif [ -z "$err" ]; then
            reason="empty stderr"
        elif [ -e "$out/manifest.json" ]; then
            reason="manifest.json written for a bad input"
        else
            while IFS= read -r want || [ -n "$want" ]; do
                [ -z "$want" ] && continue
                if [[ $shown != *"${want,,}"* ]]; then
                    reason="stderr lacks '$want'"
                    break
                fi
            done <"$dir/expect.txt"
        fi
    fi

    if [ -z "$reason" ]; then
        echo "PASS $name (exit $rc)"
        passed=$((passed + 1))
    else
        fail "$name" "$reason"
    fi
done

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
