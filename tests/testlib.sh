# Shared helpers for the script tests. Each test prints PASS/FAIL lines and
# ends with "N passed, M failed"; it exits non-zero if anything failed.
set -u
: "${AIRLLM_SPLIT:?set AIRLLM_SPLIT to the airllm-split binary}"
: "${AIRLLM_VERIFY:?set AIRLLM_VERIFY to the airllm-verify binary}"
: "${SHARED_DIR:?set SHARED_DIR to ../shared}"
: "${SRC_DIR:?set SRC_DIR to the source tree}"
SCRATCH=${1:?usage: $0 SCRATCH_DIR}
rm -rf "$SCRATCH" && mkdir -p "$SCRATCH"
MODELS="$SHARED_DIR/models"
PASS=0
FAIL=0
LAST_RC=0

ok() { PASS=$((PASS + 1)); echo "PASS: $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL: $*"; }
finish() {
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ]
}

# run WANT_RC DESC CMD...: runs CMD, keeps its output in $SCRATCH/last.{out,err}
run() {
    local want=$1 desc=$2
    shift 2
    "$@" >"$SCRATCH/last.out" 2>"$SCRATCH/last.err"
    LAST_RC=$?
    if [ "$LAST_RC" -eq "$want" ]; then
        ok "$desc"
    else
        bad "$desc: exit $LAST_RC, expected $want; stderr: $(head -c 600 "$SCRATCH/last.err")"
    fi
}

# expect_err SUBSTRING DESC: the last command's stderr mentions SUBSTRING
expect_err() {
    if grep -qF -- "$1" "$SCRATCH/last.err"; then
        ok "$2"
    else
        bad "$2: stderr lacks '$1': $(head -c 600 "$SCRATCH/last.err")"
    fi
}

# Digest of every file under a directory, for "nothing changed" checks. The
# writer's lock file (.airllm-split/lock, which holds the pid of whichever
# run last took it) is not data and is left out.
tree_digest() {
    (cd "$1" && find . -type f ! -path ./.airllm-split/lock -print0 | sort -z |
        xargs -0 -r sha256sum)
}

# golden DIR GOLDEN TOL [--batch] [-- ARGS]: $AIRLLM_RUN on DIR against a
# golden file (tests/run_golden.py), one PASS/FAIL line
golden() {
    local d=$1 g=$2
    shift 2
    if python3 "$SRC_DIR/tests/run_golden.py" "$AIRLLM_RUN" "$d" "$g" "$@" >"$SCRATCH/g.out" 2>&1; then
        ok "$(tail -n 1 "$SCRATCH/g.out")"
    else
        bad "golden $(basename "$d") $*: $(head -c 600 "$SCRATCH/g.out")"
    fi
}

# batch DIR GOLDEN [ARGS]: a one-case golden's prompt, its first 7 ids and
# the prompt again in one --prompts run of $AIRLLM_RUN (ARGS added); both
# full prompts must give the golden's greedy ids, i.e. a batch of mixed
# lengths leaves each sequence as if alone. One PASS/FAIL line.
batch() {
    local d=$1 g=$2
    shift 2
    python3 - "$g" "$SCRATCH/prompts.txt" <<'EOF'
import json, sys
ids = json.load(open(sys.argv[1]))["prompt_ids"]
f = lambda x: ",".join(map(str, x))
open(sys.argv[2], "w").write("ids:%s\nids:%s\nids:%s\n" % (f(ids), f(ids[:7]), f(ids)))
EOF
    if "$AIRLLM_RUN" -q --json --prompts "$SCRATCH/prompts.txt" -n 8 "$@" "$d" \
        >"$SCRATCH/b.json" 2>"$SCRATCH/b.err" &&
        python3 - "$g" "$SCRATCH/b.json" <<'EOF'
import json, sys
g = json.load(open(sys.argv[1]))
r = sorted((x for x in map(json.loads, open(sys.argv[2])) if x["type"] == "result"),
           key=lambda x: x["index"])  # JSON Lines, docs/json.md
assert r[0]["generated_ids"] == g["greedy_ids"], (r[0]["generated_ids"], g["greedy_ids"])
assert r[2]["generated_ids"] == g["greedy_ids"], (r[2]["generated_ids"], g["greedy_ids"])
EOF
    then
        ok "$(basename "$(dirname "$g")") $(basename "$g"): batch of 3 (mixed lengths) $*"
    else
        bad "$g: batch $*: $(head -c 300 "$SCRATCH/b.err")"
    fi
}

# set_key DIR KEY JSON_VALUE (null: remove) in DIR/config.json
set_key() {
    python3 - "$1/config.json" "$2" "$3" <<'EOF'
import json, sys
p, k, v = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
c = json.load(open(p))
if v is None:
    c.pop(k, None)
else:
    c[k] = v
json.dump(c, open(p, "w"), indent=1)
EOF
}

# make_cache SRC REPO REV...: a Hugging Face cache layout of SRC's files,
# as huggingface_hub lays a download out: REPO/blobs/SHA256,
# REPO/snapshots/REV/NAME -> ../../blobs/SHA256, and refs/main = the first
# REV.
make_cache() {
    local from=$1 repo=$2 rev f h
    shift 2
    mkdir -p "$repo/blobs" "$repo/refs"
    for rev in "$@"; do
        mkdir -p "$repo/snapshots/$rev"
        for f in "$from"/*; do
            h=$(sha256sum "$f" | cut -c1-64)
            cp "$f" "$repo/blobs/$h"
            ln -s "../../blobs/$h" "$repo/snapshots/$rev/$(basename "$f")"
        done
    done
    echo "$1" >"$repo/refs/main"
}

# offset_of FILE PREFIX: absolute offset in the safetensors FILE of the
# data of the first tensor (by name) whose name starts with PREFIX.
offset_of() {
    python3 - "$1" "$2" <<'PY'
import json, struct, sys
f = open(sys.argv[1], "rb")
n = struct.unpack("<Q", f.read(8))[0]
h = json.loads(f.read(n))
k = sorted(k for k in h if k.startswith(sys.argv[2]))[0]
print(8 + n + h[k]["data_offsets"][0])
PY
}
