#!/usr/bin/env bash
# Compares two builds of airllm-split and airllm-quant: the same conversions
# with each, then the output trees byte for byte and the messages (stdout,
# stderr, exit status; timings masked). For refactors that must change
# nothing a user can see.
#   scripts/compare_convert.sh OLD_BUILD_DIR NEW_BUILD_DIR [SCRATCH]
# Inputs: ../shared/models/* and tests/data/arch/*. Prints one line per case
# and "N differences" at the end; exits 1 if any.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
old=$(cd "$1" && pwd) new=$(cd "$2" && pwd)
scratch=${3:-$(mktemp -d)}
rm -rf "$scratch" && mkdir -p "$scratch"
shared=${SHARED_DIR:-$root/../shared}
diffs=0 cases=0

# mask: timings and the scratch paths, which differ between the two runs
mask() {
    sed -E -e "s#$scratch/(old|new)#SCRATCH#g" -e 's/[0-9]+\.[0-9]+ s\b/T s/g' \
        -e 's/"seconds":[[:space:]]*[0-9.e+-]+/"seconds": T/' \
        -e 's/"total_s":[0-9.e+-]+/"total_s":T/' "$1"
}

# one NAME TOOL ARGS... (IN and OUT in ARGS stand for the input and output)
one() {
    local name=$1 tool=$2 in=$3
    shift 3
    cases=$((cases + 1))
    for side in old new; do
        local bin=$old
        [ $side = new ] && bin=$new
        local d="$scratch/$side/$name"
        mkdir -p "$d"
        local input=$in
        if [ "${COPY_INPUT:-0}" = 1 ]; then
            cp -r "$in" "$d/in" && input="$d/in"
        fi
        local args=()
        for a in "$@"; do
            case $a in IN) args+=("$input") ;; OUT) args+=("$d/out") ;; *) args+=("$a") ;; esac
        done
        (cd "$d" && "$bin/$tool" "${args[@]}" >"$d/stdout" 2>"$d/stderr"; echo $? >"$d/rc")
    done
    local o="$scratch/old/$name" n="$scratch/new/$name" why=""
    cmp -s "$o/rc" "$n/rc" || why+=" exit($(cat "$o/rc")/$(cat "$n/rc"))"
    for f in stdout stderr; do
        cmp -s <(mask "$o/$f") <(mask "$n/$f") || why+=" $f"
    done
    for t in out in; do
        if [ -e "$o/$t" ] || [ -e "$n/$t" ]; then
            diff -r --no-dereference "$o/$t" "$n/$t" >/dev/null 2>&1 || why+=" tree:$t"
        fi
    done
    if [ -n "$why" ]; then
        echo "DIFF $name:$why"
        diffs=$((diffs + 1))
    else
        echo "same $name (exit $(cat "$o/rc"), $(find "$o" -type f | wc -l) files)"
    fi
}

inputs=()
for m in "$shared"/models/*/ "$root"/tests/data/arch/*/; do
    [ -d "$m" ] && inputs+=("${m%/}")
done
for in in "${inputs[@]}"; do
    b=$(basename "$in")
    one "$b.raw" airllm-split "$in" IN OUT
    one "$b.raw.json" airllm-split "$in" --json IN OUT
    one "$b.zstd" airllm-split "$in" --compress zstd IN OUT
    one "$b.zstd9j2" airllm-split "$in" --compress zstd:9 --jobs 2 IN OUT
    one "$b.dry" airllm-split "$in" --dry-run IN OUT
    one "$b.nf4" airllm-quant "$in" IN OUT
    one "$b.int8j2" airllm-quant "$in" --type int8 --jobs 2 --json IN OUT
    one "$b.fp4dq" airllm-quant "$in" --type fp4 --double-quant --block-size 128 \
        --include embed,lm_head --report IN OUT
    one "$b.quantdry" airllm-quant "$in" --dry-run IN OUT
    COPY_INPUT=1 one "$b.delorig" airllm-split "$in" --delete-original IN OUT
    COPY_INPUT=1 one "$b.delorigz" airllm-split "$in" --compress zstd --delete-original IN OUT
done
# airllm-quant from a directory airllm-split wrote
for in in "${inputs[@]}"; do
    b=$(basename "$in")
    one "$b.split2quant" airllm-quant "$scratch/old/$b.raw/out" IN OUT
    one "$b.zstd2quant" airllm-quant "$scratch/old/$b.zstd/out" --type int8 IN OUT
done
# reruns over a complete OUT_DIR, and messages of the command line
b=$(basename "${inputs[0]}")
one rerun.same airllm-split "${inputs[0]}" IN "$scratch/old/$b.raw/out"
one rerun.other airllm-split "${inputs[0]}" --compress zstd IN "$scratch/old/$b.raw/out"
one usage.none airllm-split -
one usage.quantopt airllm-split - --type nf4 a b
one usage.splitopt airllm-quant - --compress zstd a b
one usage.level airllm-split - --compress zstd:20 a b
one usage.jobs airllm-quant - --jobs 0 a b
one usage.include airllm-quant - --include foo a b
one usage.block airllm-quant - --block-size 48 a b
one help.split airllm-split - --help
one help.quant airllm-quant - --help
one version.split airllm-split - --version
one version.quant airllm-quant - --version
one missing.in airllm-split "$scratch/nonexistent" IN OUT
echo "$cases cases, $diffs differences"
[ "$diffs" = 0 ]
