#!/usr/bin/env bash
# End-to-end test of airllm-split / airllm-verify over every architecture
# family that scripts/make_synthetic.py writes.
#
#   tests/families.sh BUILD_DIR SCRATCH_DIR
#
# For each family, in F32 and BF16, unsharded and in 3 shards: generate a
# tiny checkpoint, split it, verify it against the source (--against), check
# that manifest.json lists one unit file per decoder layer, then split again
# and compare every unit file byte for byte (determinism).
# Prints PASS/FAIL per case and ends with "N passed, M failed".
# Exit status: 0 all passed, 1 a case failed, 2 usage.
set -uo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 BUILD_DIR SCRATCH_DIR" >&2
    exit 2
fi
BUILD=$1
SCRATCH=$2
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GEN=$HERE/../scripts/make_synthetic.py
SPLIT=$BUILD/airllm-split
VERIFY=$BUILD/airllm-verify
for f in "$SPLIT" "$VERIFY"; do
    [ -x "$f" ] || { echo "families.sh: no executable $f" >&2; exit 2; }
done
[ -f "$GEN" ] || { echo "families.sh: no $GEN" >&2; exit 2; }
mkdir -p "$SCRATCH" || exit 2

# Checks DIR/manifest.json against HF_DIR/config.json: the "units" array has
# exactly one "layer" unit per decoder layer, for layers 0..N-1, each with a
# file that exists; a tied LM head has no file. Prints the unit files.
check_manifest() {
    python3 - "$1" "$2" <<'EOF'
import json, os, sys
out, hf = sys.argv[1], sys.argv[2]
cfg = json.load(open(os.path.join(hf, "config.json")))
n = cfg["num_layers"] if "num_layers" in cfg else cfg["num_hidden_layers"]
m = json.load(open(os.path.join(out, "manifest.json")))
units = m["units"]
layers = [u for u in units if u.get("kind") == "layer"]
if len(layers) != n:
    sys.exit(f"manifest lists {len(layers)} layer units, config says {n}")
if sorted(u.get("layer") for u in layers) != list(range(n)):
    sys.exit("layer units do not cover layers 0..%d once each" % (n - 1))
files = []
for u in units:
    f = u.get("file")
    if f is None:
        if u.get("kind") != "lm_head":
            sys.exit(f"unit {u.get('name')} has no file")
        continue
    if not os.path.isfile(os.path.join(out, f)):
        sys.exit(f"unit file {f} missing")
    files.append(f)
for u in layers:
    if not u.get("file"):
        sys.exit(f"layer unit {u.get('name')} has no file")
if cfg.get("tie_word_embeddings"):
    for u in units:
        if u.get("kind") == "lm_head" and u.get("file"):
            sys.exit("tied LM head has a file of its own")
print("\n".join(files))
EOF
}

# step WHAT LOG CMD...: runs CMD with its output in LOG; on failure prints
# the exit status and the end of the output.
step() {
    local what=$1 log=$2 rc
    shift 2
    "$@" >"$log" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "$what exited $rc: $(tail -n 5 "$log" | tr '\n' ' ')"
        return 1
    fi
}

# run_case FAMILY DTYPE SHARDS: returns 0 on pass; on failure prints why.
run_case() {
    local fam=$1 dtype=$2 shards=$3
    local dir=$SCRATCH/$fam-$dtype-s$shards
    local hf=$dir/hf out1=$dir/out1 out2=$dir/out2 log=$dir/log
    rm -rf "$dir"
    mkdir -p "$dir" || { echo "cannot create $dir"; return 1; }
    if ! python3 "$GEN" --family "$fam" --dtype "$dtype" --shards "$shards" --out "$hf" \
        >"$log" 2>&1; then
        echo "make_synthetic failed: $(tail -n 3 "$log")"
        return 1
    fi
    step "airllm-split" "$log" "$SPLIT" "$hf" "$out1" || return 1
    step "airllm-verify --against" "$log" "$VERIFY" --against "$hf" "$out1" || return 1
    local files
    if ! files=$(check_manifest "$out1" "$hf" 2>&1); then
        echo "manifest: $files"
        return 1
    fi
    step "second airllm-split" "$log" "$SPLIT" "$hf" "$out2" || return 1
    local f
    while IFS= read -r f; do
        [ -n "$f" ] || continue
        if ! cmp -s "$out1/$f" "$out2/$f"; then
            echo "not deterministic: $f differs between two splits"
            return 1
        fi
    done <<<"$files"
    # Same set of unit files on both sides.
    if [ "$(cd "$out1" && ls -- *.airc 2>/dev/null)" != "$(cd "$out2" && ls -- *.airc 2>/dev/null)" ]; then
        echo "not deterministic: the two splits wrote different file sets"
        return 1
    fi
    rm -rf "$dir"
    return 0
}

if ! FAMILIES=$(python3 "$GEN" --list); then
    echo "families.sh: make_synthetic.py --list failed" >&2
    exit 1
fi

pass=0
fail=0
for fam in $FAMILIES; do
    for dtype in F32 BF16; do
        for shards in 1 3; do
            name="$fam $dtype shards=$shards"
            if why=$(run_case "$fam" "$dtype" "$shards"); then
                echo "PASS $name"
                pass=$((pass + 1))
            else
                echo "FAIL $name: $why"
                fail=$((fail + 1))
            fi
        done
    done
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
