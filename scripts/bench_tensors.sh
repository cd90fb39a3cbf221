#!/usr/bin/env bash
# How the tools scale with the number of tensors, not their bytes: Qwen2
# checkpoints of 10k, 100k and 1M tiny tensors (scripts/make_many_tensors.py,
# 12 per layer, two shards and an index), and for each the wall time and
# peak RSS of
#   plan    airllm-split --dry-run (header and index parsing, planning)
#   split   airllm-split (one unit file per layer: fsync-bound on most disks)
#   verify  airllm-verify (manifest, headers, SHA-256 of every file)
#   run     airllm-run --mem-budget 0 --ids 1,2,3 -n 1 (startup: manifest,
#           every unit header, then one token streamed through every layer)
# with the new binaries and, when given, the base ones. The base's verify
# and run read the new split's output (the format is the same).
#
#   scripts/bench_tensors.sh NEW_BIN_DIR [BASE_BIN_DIR]
#
# Environment:
#   BENCH_DIR      work directory (default /tmp/airllm-bench-tensors); the
#                  checkpoints are kept, outputs removed at the end
#   BENCH_SIZES    tensor counts (default "10000 100000 1000000")
#   BENCH_STEPS    steps to measure (default "plan split verify run")
#   BENCH_TIMEOUT  seconds a command may take before it is stopped and
#                  reported as ">N" (default 300)
#   BENCH_BASE_TIMEOUT  the same for the base binaries (default BENCH_TIMEOUT):
#                  their quadratic steps at 1M tensors run for tens of minutes
# Prints a Markdown table on stdout; progress on stderr.
set -uo pipefail

die() { echo "bench_tensors: $*" >&2; exit 1; }
NEW=${1:?usage: $0 NEW_BIN_DIR [BASE_BIN_DIR]}
BASE=${2:-}
DIR=${BENCH_DIR:-/tmp/airllm-bench-tensors}
SIZES=${BENCH_SIZES:-10000 100000 1000000}
STEPS=${BENCH_STEPS:-plan split verify run}
TO_NEW=${BENCH_TIMEOUT:-300}
TO_BASE=${BENCH_BASE_TIMEOUT:-$TO_NEW}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ -x /usr/bin/time ] || die "no /usr/bin/time (apt-get install time)"
for b in "$NEW" $BASE; do
    for t in airllm-split airllm-verify airllm-run; do
        [ -x "$b/$t" ] || die "no $b/$t"
    done
done
mkdir -p "$DIR"

# measure CMD...: "seconds MiB" of CMD, or ">$TO -" when it ran out of time,
# or "fail -" when it failed
measure() {
    local out rc
    out=$(timeout "$TO" /usr/bin/time -f '%e %M' "$@" 2>&1 >/dev/null)
    rc=$?
    if [ $rc -eq 124 ]; then
        echo ">$TO -"
    elif [ $rc -ne 0 ]; then
        echo "bench_tensors: $* failed: $(echo "$out" | head -c 300)" >&2
        echo "fail -"
    else
        echo "$out" | tail -n 1 | awk '{printf "%s %.0f\n", $1, $2 / 1024}'
    fi
}

cleanup() { rm -rf "$DIR"/out-*; }
trap cleanup EXIT

echo "| tensors | step | base s | base MiB | new s | new MiB |"
echo "| ---: | --- | ---: | ---: | ---: | ---: |"
for n in $SIZES; do
    ck="$DIR/ckpt-$n"
    if [ ! -f "$ck/config.json" ]; then
        echo "generating $ck" >&2
        python3 "$HERE/make_many_tensors.py" --tensors "$n" --out "$ck" >&2 ||
            die "generator failed"
    fi
    for step in $STEPS; do
        declare -A res=()
        for who in new base; do
            b=$NEW
            [ $who = base ] && b=$BASE
            [ -n "$b" ] || { res[$who]="- -"; continue; }
            TO=$TO_NEW
            [ $who = base ] && TO=$TO_BASE
            out="$DIR/out-$n-$who"
            echo "$n $step $who" >&2
            case $step in
            plan) res[$who]=$(measure "$b/airllm-split" -n "$ck" "$out") ;;
            split)
                rm -rf "$out"
                res[$who]=$(measure "$b/airllm-split" -q "$ck" "$out")
                ;;
            verify) res[$who]=$(measure "$b/airllm-verify" -q "$DIR/out-$n-new") ;;
            run)
                res[$who]=$(measure "$b/airllm-run" -q --mem-budget 0 --ids 1,2,3 -n 1 \
                    "$DIR/out-$n-new")
                ;;
            esac
        done
        [ "$step" = split ] && rm -rf "$DIR/out-$n-base"
        read -r bs bm <<<"${res[base]}"
        read -r ns nm <<<"${res[new]}"
        echo "| $n | $step | $bs | $bm | $ns | $nm |"
    done
    rm -rf "$DIR/out-$n-new"
done
