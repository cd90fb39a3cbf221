#!/usr/bin/env bash
# Benchmark for airllm-split and airllm-verify on a Llama-2-7B-shaped BF16
# checkpoint (about 13.5 GB, written once by scripts/gen_llama7b.c and kept).
#
#   scripts/bench_split.sh
#
# Environment:
#   AIRLLM_BIN    directory holding airllm-split and airllm-verify (default build)
#   AIRLLM_BASE_BIN  a baseline build's directory (optional): its airllm-split
#                 and airllm-verify are measured in the same run, right after
#                 the new ones, and the report adds new/base time ratios
#   BENCH_DIR     work directory on the disk to measure (default /work/bench-data)
#   BENCH_LAYERS  decoder layers to generate (default 32; e.g. 2 for a quick run)
#   BENCH_RUNS    runs of each copy/split measurement, best taken (default 2)
#   CC            C compiler for the generator (default cc)
#
# Measured in one run, each command after `sync`, page cache left as it is
# (nothing is dropped, so reads are warm when the data fits in RAM):
#   (a) cp of the shards to a fresh directory on the same disk vs airllm-split;
#   (b) openssl dgst -sha256 of the output unit files vs airllm-verify
#       --jobs 1 and --jobs 2;
#   (c) airllm-split --compress zstd: size ratio and throughput.
# Wall time and peak RSS come from /usr/bin/time -f '%e %M'.
# Copies and outputs are removed on exit; the generated checkpoint is kept.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"
RUNS=${BENCH_RUNS:-2}
CC=${CC:-cc}
SPLIT=$BIN/airllm-split
VERIFY=$BIN/airllm-verify
TIME=/usr/bin/time

[[ $LAYERS =~ ^[1-9][0-9]*$ ]] || die "BENCH_LAYERS must be a positive integer"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[ -x "$SPLIT" ] || die "no $SPLIT (build first, or set AIRLLM_BIN)"
[ -x "$VERIFY" ] || die "no $VERIFY (build first, or set AIRLLM_BIN)"
BASE=${AIRLLM_BASE_BIN:-}
if [ -n "$BASE" ]; then
    BASE=$(cd "$BASE" && pwd) || die "no directory $AIRLLM_BASE_BIN"
    [ -x "$BASE/airllm-split" ] && [ -x "$BASE/airllm-verify" ] ||
        die "no airllm-split and airllm-verify in $BASE"
fi
[ -x "$TIME" ] || die "no $TIME (apt-get install time)"
command -v openssl >/dev/null || die "no openssl"
command -v python3 >/dev/null || die "no python3"

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
WORK=$(mktemp -d "$BENCH_DIR/work.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- checkpoint

# Prints the shard files of a complete checkpoint in $1, or fails: the index
# is written last; every shard it names must exist with a header whose data
# exactly fills the file.
checkpoint_ok() {
    python3 - "$1" "$LAYERS" <<'EOF'
import json, os, struct, sys
d, layers = sys.argv[1], int(sys.argv[2])
try:
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    cfg = json.load(open(os.path.join(d, "config.json")))
    if cfg.get("num_hidden_layers") != layers:
        sys.exit(1)
    total = 0
    files = sorted(set(idx["weight_map"].values()))
    for fn in files:
        p = os.path.join(d, fn)
        with open(p, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            h = json.loads(f.read(n))
        h.pop("__metadata__", None)
        end = max(e["data_offsets"][1] for e in h.values())
        if os.path.getsize(p) != 8 + n + end:
            sys.exit(1)
        total += end
    if total != idx["metadata"]["total_size"]:
        sys.exit(1)
    print("\n".join(files))
except Exception:
    sys.exit(1)
EOF
}

GEN=$WORK/gen_llama7b
"$CC" -O2 -o "$GEN" "$ROOT/scripts/gen_llama7b.c" || die "cannot compile gen_llama7b.c"
if SHARDS=$(checkpoint_ok "$HF7"); then
    echo "reusing checkpoint $HF7"
else
    echo "generating checkpoint $HF7 ($LAYERS layers) ..."
    rm -rf "$HF7"
    t0=$(date +%s.%N)
    "$GEN" "$HF7" --layers "$LAYERS" || die "gen_llama7b failed"
    t1=$(date +%s.%N)
    SHARDS=$(checkpoint_ok "$HF7") || die "generated checkpoint does not check out"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "generated in %.1f s\n", b - a }'
fi
mapfile -t SHARD_FILES < <(printf '%s\n' "$SHARDS" | sed "s|^|$HF7/|")
SRC_BYTES=$(stat -c %s "${SHARD_FILES[@]}" | awk '{ s += $1 } END { printf "%.0f\n", s }')

MEM_KB=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
FREE_KB=$(df -Pk "$BENCH_DIR" | awk 'NR == 2 { print $4 }')
# Peak disk use: the split output (or the copy) next to the checkpoint.
NEED_KB=$(( SRC_BYTES / 1024 * 11 / 10 + 65536 ))
[ "$FREE_KB" -ge "$NEED_KB" ] ||
    die "need about $((NEED_KB / 1048576)) GiB free in $BENCH_DIR, have $((FREE_KB / 1048576)) GiB"

echo
echo "host:        $(nproc) CPUs, $(awk -v k="$MEM_KB" 'BEGIN { printf "%.1f GiB", k / 1048576 }') RAM"
echo "disk:        $(df -P "$BENCH_DIR" | awk 'NR == 2 { print $1 " mounted on " $6 }')"
echo "checkpoint:  ${#SHARD_FILES[@]} shards, $SRC_BYTES bytes"
if [ $(( SRC_BYTES / 1024 )) -lt $(( MEM_KB * 8 / 10 )) ]; then
    echo "page cache:  the checkpoint fits in RAM: source reads are warm (no caches dropped);"
    if [ $(( SRC_BYTES / 1024 * 2 )) -ge $(( MEM_KB * 8 / 10 )) ]; then
        echo "             source plus output do not both fit: part of the source may be re-read from disk"
    fi
else
    echo "page cache:  the checkpoint does NOT fit in RAM: source reads hit the disk"
fi
echo "tools:       $SPLIT, $VERIFY"
[ -z "$BASE" ] || echo "baseline:    $BASE/airllm-split, $BASE/airllm-verify"

# ---------------------------------------------------------------- measuring

# run_timed LOG CMD...: sync, then time CMD; sets WALL (s) and RSS (KiB).
# Fails (with the tool's output) when CMD fails.
run_timed() {
    local log=$1
    shift
    sync
    if ! "$TIME" -f '%e %M' -o "$WORK/time.out" "$@" >"$log" 2>&1; then
        echo "bench_split: command failed: $*" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    read -r WALL RSS < <(tail -n 1 "$WORK/time.out")
}

# best_of SETUP CMD...: runs SETUP (untimed) then CMD, $RUNS times; keeps the
# fastest run's WALL and its RSS in BEST_WALL, BEST_RSS.
best_of() {
    local setup=$1
    shift
    BEST_WALL=
    BEST_RSS=
    local i
    for ((i = 1; i <= RUNS; i++)); do
        eval "$setup"
        run_timed "$WORK/cmd.log" "$@"
        local cmd="$*"
        [ ${#cmd} -le 100 ] || cmd="${cmd:0:97}..."
        echo "  run $i: $cmd : ${WALL} s, ${RSS} KiB"
        if [ -z "$BEST_WALL" ] || awk -v a="$WALL" -v b="$BEST_WALL" 'BEGIN { exit !(a < b) }'; then
            BEST_WALL=$WALL
            BEST_RSS=$RSS
        fi
    done
}

sum_sizes() { # total bytes of the files given
    [ $# -gt 0 ] || { echo 0; return; }
    stat -c %s "$@" | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

ROWS=()
# row NAME WALL RSS_KiB BYTES [NOTE]
row() {
    ROWS+=("$(awk -v n="$1" -v w="$2" -v r="$3" -v b="$4" -v note="${5:-}" 'BEGIN {
        mbs = (w > 0) ? b / 1e6 / w : 0
        printf "%-34s %9.2f %10.1f %10.1f  %s", n, w, mbs, r / 1024, note }')")
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }

OUT=$WORK/out
COPY=$WORK/copy
echo
echo "(a) copy vs split"
best_of 'rm -rf "$COPY"; mkdir "$COPY"' cp "${SHARD_FILES[@]}" "$COPY/"
CP_WALL=$BEST_WALL
CP_RSS=$BEST_RSS
rm -rf "$COPY"
row "cp shards (same disk)" "$CP_WALL" "$CP_RSS" "$SRC_BYTES"
# airllm-split fsyncs every file it writes; cp leaves dirty pages behind. The
# durable baseline times cp and the sync that makes its copy as safe.
best_of 'rm -rf "$COPY"; mkdir "$COPY"' sh -c 'cp "$@" && sync' sh "${SHARD_FILES[@]}" "$COPY/"
CPS_WALL=$BEST_WALL
rm -rf "$COPY"
row "cp shards + sync" "$CPS_WALL" "$BEST_RSS" "$SRC_BYTES"

best_of 'rm -rf "$OUT"' "$SPLIT" "$HF7" "$OUT"
SPLIT_WALL=$BEST_WALL
SPLIT_RSS=$BEST_RSS
row "airllm-split" "$SPLIT_WALL" "$SPLIT_RSS" "$SRC_BYTES" \
    "time x$(ratio "$SPLIT_WALL" "$CP_WALL") of cp"
if [ -n "$BASE" ]; then
    best_of 'rm -rf "$OUT"' "$BASE/airllm-split" "$HF7" "$OUT"
    BSPLIT_WALL=$BEST_WALL
    row "airllm-split (baseline)" "$BEST_WALL" "$BEST_RSS" "$SRC_BYTES" \
        "new/base time x$(ratio "$SPLIT_WALL" "$BEST_WALL")"
    rm -rf "$OUT"
    best_of 'rm -rf "$OUT"' "$SPLIT" "$HF7" "$OUT" # the output verify reads
fi

shopt -s nullglob
UNITS=("$OUT"/*.airc)
LAYER_UNITS=("$OUT"/layer*.airc)
shopt -u nullglob
[ ${#UNITS[@]} -gt 0 ] || die "airllm-split wrote no *.airc files in $OUT"
UNIT_BYTES=$(sum_sizes "${UNITS[@]}")
MAX_UNIT=$(stat -c '%s %n' "${UNITS[@]}" | sort -n | tail -n 1)
MAX_LAYER=$( [ ${#LAYER_UNITS[@]} -gt 0 ] && stat -c %s "${LAYER_UNITS[@]}" | sort -n | tail -n 1 || echo 0)

echo
echo "(b) sha256 vs verify (${#UNITS[@]} unit files, $UNIT_BYTES bytes)"
best_of ':' openssl dgst -sha256 "${UNITS[@]}"
SSL_WALL=$BEST_WALL
SSL_RSS=$BEST_RSS
row "openssl dgst -sha256 *.airc" "$SSL_WALL" "$SSL_RSS" "$UNIT_BYTES"
best_of ':' "$VERIFY" --jobs 1 "$OUT"
V1_WALL=$BEST_WALL
V1_RSS=$BEST_RSS
row "airllm-verify --jobs 1" "$V1_WALL" "$V1_RSS" "$UNIT_BYTES" \
    "throughput x$(ratio "$SSL_WALL" "$V1_WALL") of openssl"
best_of ':' "$VERIFY" --jobs 2 "$OUT"
V2_WALL=$BEST_WALL
V2_RSS=$BEST_RSS
row "airllm-verify --jobs 2" "$V2_WALL" "$V2_RSS" "$UNIT_BYTES" \
    "throughput x$(ratio "$SSL_WALL" "$V2_WALL") of openssl"
if [ -n "$BASE" ]; then
    best_of ':' "$BASE/airllm-verify" --jobs 2 "$OUT"
    BV2_WALL=$BEST_WALL
    row "airllm-verify --jobs 2 (baseline)" "$BEST_WALL" "$BEST_RSS" "$UNIT_BYTES" \
        "new/base time x$(ratio "$V2_WALL" "$BEST_WALL")"
fi
rm -rf "$OUT"

echo
echo "(c) split --compress zstd"
best_of 'rm -rf "$OUT"' "$SPLIT" --compress zstd "$HF7" "$OUT"
Z_WALL=$BEST_WALL
Z_RSS=$BEST_RSS
shopt -s nullglob
ZUNITS=("$OUT"/*.airc)
shopt -u nullglob
Z_BYTES=$(sum_sizes "${ZUNITS[@]}")
row "airllm-split --compress zstd" "$Z_WALL" "$Z_RSS" "$SRC_BYTES" \
    "size x$(ratio "$Z_BYTES" "$UNIT_BYTES") of uncompressed units"
if [ -n "$BASE" ]; then
    best_of 'rm -rf "$OUT"' "$BASE/airllm-split" --compress zstd "$HF7" "$OUT"
    BZ_WALL=$BEST_WALL
    row "airllm-split --compress zstd (base)" "$BEST_WALL" "$BEST_RSS" "$SRC_BYTES" \
        "new/base time x$(ratio "$Z_WALL" "$BEST_WALL")"
    best_of 'rm -rf "$OUT"' "$SPLIT" --compress zstd "$HF7" "$OUT" # for verify below
fi
best_of ':' "$VERIFY" --jobs 2 "$OUT"
row "airllm-verify --jobs 2 (zstd)" "$BEST_WALL" "$BEST_RSS" "$Z_BYTES" \
    "hashes the compressed files"
rm -rf "$OUT"

# ---------------------------------------------------------------- report

echo
echo "figures (best of $RUNS; MB = 10^6 bytes; RSS = peak resident set)"
printf '%-34s %9s %10s %10s  %s\n' "command" "wall s" "MB/s" "RSS MiB" "note"
printf '%s\n' "${ROWS[@]}"
echo
echo "split / cp wall time:             $(ratio "$SPLIT_WALL" "$CP_WALL")"
echo "split throughput / cp:            $(ratio "$CP_WALL" "$SPLIT_WALL") (target >= 0.9)"
echo "split throughput / (cp + sync):   $(ratio "$CPS_WALL" "$SPLIT_WALL")"
echo "verify -j1 throughput / openssl:  $(ratio "$SSL_WALL" "$V1_WALL") (target >= 0.9)"
echo "verify -j2 throughput / openssl:  $(ratio "$SSL_WALL" "$V2_WALL") (target >= 1.7)"
echo "verify --jobs 1 / openssl time:   $(ratio "$V1_WALL" "$SSL_WALL")"
echo "verify --jobs 2 / openssl time:   $(ratio "$V2_WALL" "$SSL_WALL")"
echo "zstd output / plain output size:  $(ratio "$Z_BYTES" "$UNIT_BYTES") ($Z_BYTES / $UNIT_BYTES bytes)"
if [ -n "$BASE" ]; then
    echo "split new / baseline time:        $(ratio "$SPLIT_WALL" "$BSPLIT_WALL")"
    echo "split zstd new / baseline time:   $(ratio "$Z_WALL" "$BZ_WALL")"
    echo "verify -j2 new / baseline time:   $(ratio "$V2_WALL" "$BV2_WALL")"
fi
awk -v m="$MAX_LAYER" -v u="$MAX_UNIT" -v s="$SPLIT_RSS" -v v1="$V1_RSS" -v v2="$V2_RSS" 'BEGIN {
    split(u, a, " ")
    n = split(a[2], p, "/")
    printf "largest unit file:                %s (%.1f MiB)\n", p[n], a[1] / 1048576
    printf "largest layer file:               %.1f MiB; + 64 MiB = %.1f MiB\n", m / 1048576, m / 1048576 + 64
    lim = m / 1024 + 65536
    printf "peak RSS vs largest layer + 64 MiB: split %.1f, verify -j1 %.1f, verify -j2 %.1f MiB (%s)\n",
        s / 1024, v1 / 1024, v2 / 1024,
        (s <= lim && v1 <= lim && v2 <= lim) ? "all within" : "ABOVE for at least one"
}'
