#!/usr/bin/env bash
# A unit file damaged on disk (an SD card or eMMC flipping a bit) must never
# run: with no option given, every load checks each tensor's XXH3 (format
# 1.2 check block), resident or streamed, raw, zstd or nf4, and the run
# exits 1 naming the file and the tensor, before any token is printed.
# 1.0/1.1 files still load, with a one-line notice, and --verify-load=full
# checks them with SHA-256.
. "$(dirname "$0")/../testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
: "${AIRLLM_QUANT:?set AIRLLM_QUANT to the airllm-quant binary}"
R=$AIRLLM_RUN
S=$SCRATCH

"$AIRLLM_SPLIT" -q "$MODELS/stories260K" "$S/raw"
"$AIRLLM_SPLIT" -q -c zstd "$MODELS/stories260K-bf16-sharded" "$S/zstd"
"$AIRLLM_QUANT" -q "$MODELS/stories260K" "$S/nf4"

# tensor FILE: "offset stored_len name" of the tensor with the most stored
# bytes (name last: it is printed whole)
largest() {
    python3 - "$1" <<'EOF'
import struct, sys
f = open(sys.argv[1], "rb").read()
n = struct.unpack_from("<I", f, 12)[0]
names = 64 + 128 * n
best = None
for i in range(n):
    e = 64 + 128 * i
    noff, nlen = struct.unpack_from("<QI", f, e)
    off, stored = struct.unpack_from("<QQ", f, e + 88)
    if best is None or stored > best[1]:
        best = (off, stored, f[names + noff:names + noff + nlen].decode(), names + noff + nlen - 1)
print(best[0], best[1], best[3], best[2])
EOF
}

# flip FILE OFFSET BIT
flip() {
    python3 - "$@" <<'EOF'
import sys
p, at, bit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(p, "r+b") as f:
    f.seek(at)
    b = f.read(1)[0]
    f.seek(at)
    f.write(bytes([b ^ (1 << bit)]))
EOF
}

# refused DESC NEEDLE... -- RUN ARGS: exit 1, stderr names every needle,
# nothing on stdout
refused() {
    local desc=$1
    shift
    local needles=()
    while [ "$1" != "--" ]; do
        needles+=("$1")
        shift
    done
    shift
    run 1 "$desc: exit 1" "$R" --ids 1,2,3 -n 4 "$@"
    for n in "${needles[@]}"; do
        expect_err "$n" "$desc: names $n"
    done
    if [ -s "$S/last.out" ]; then bad "$desc: printed output: $(head -c 200 "$S/last.out")"; fi
}

for v in raw zstd nf4; do
    for path in "$S/$v"/*.airc; do
        f=$(basename "$path")
        read -r off stored name_end name < <(largest "$path")
        # one bit in the middle of the largest tensor's stored bytes
        rm -rf "$S/c" && cp -r "$S/$v" "$S/c"
        flip "$S/c/$f" $((off + stored / 2)) 3
        refused "$v $f data, resident" "$f" "'$name'" -- "$S/c"
        refused "$v $f data, streamed" "$f" "'$name'" -- --mem-budget 0 "$S/c"
        refused "$v $f data, streamed, 3 io threads" "$f" "'$name'" -- --mem-budget 0 \
            --io-threads 3 "$S/c"
        run 1 "$v $f data: airllm-verify" "$AIRLLM_VERIFY" "$S/c"
        expect_err "\"$name\": XXH3" "$v $f data: airllm-verify names the tensor"
        # one bit of the same tensor's name, in the header: the name is part
        # of the tensor's checksum, so the damage is pinned on it
        rm -rf "$S/c" && cp -r "$S/$v" "$S/c"
        flip "$S/c/$f" "$name_end" 0
        refused "$v $f header, resident" "$f" "'${name%?}" "XXH3" -- "$S/c"
        refused "$v $f header, streamed" "$f" "'${name%?}" "XXH3" -- --mem-budget 0 "$S/c"
    done
done

# the fixed header: layer_index 1 -> 0 is a valid value; its checksum is not
rm -rf "$S/c" && cp -r "$S/raw" "$S/c"
flip "$S/c/layer.00001.airc" 20 0
refused "raw layer.00001 fixed header" "layer.00001.airc" "fixed header" -- "$S/c"

# --verify-load=off does not check (for measurement only), and says so
rm -rf "$S/c" && cp -r "$S/raw" "$S/c"
read -r off stored name_end name < <(largest "$S/c/layer.00002.airc")
flip "$S/c/layer.00002.airc" $((off + stored / 2)) 3
run 0 "--verify-load=off runs a damaged file" "$R" --ids 1,2,3 -n 4 --verify-load=off "$S/c"
expect_err "not checked" "--verify-load=off says loads are not checked"
refused "--verify-load=fast" "layer.00002.airc" "'$name'" -- --verify-load=fast --mem-budget 0 "$S/c"
refused "streamed, --direct" "layer.00002.airc" "'$name'" -- --mem-budget 0 --direct "$S/c"
refused "streamed, --no-prefetch" "layer.00002.airc" "'$name'" -- --mem-budget 0 --no-prefetch "$S/c"
refused "resident, --direct" "layer.00002.airc" "'$name'" -- --direct "$S/c"
refused "--verify-load (full)" "layer.00002.airc" "SHA-256" "'$name'" -- --verify-load "$S/c"
refused "--verify-load=full" "layer.00002.airc" "SHA-256" -- --verify-load=full --mem-budget 0 "$S/c"
run 2 "--verify-load=slow is a usage error" "$R" --ids 1,2,3 --verify-load=slow "$S/raw"
expect_err "fast, full or off" "--verify-load=slow: says what is allowed"

# MoE: experts are read on demand when streamed; damage in every expert of
# layer 0 (the router picks some) is caught on that read too
moe="$SRC_DIR/tests/data/arch/mixtral_moe"
if [ -d "$moe" ]; then
    "$AIRLLM_SPLIT" -q "$moe" "$S/moe"
    rm -rf "$S/c" && cp -r "$S/moe" "$S/c"
    python3 - "$S/c/layer.00000.airc" <<'EOF'
import struct, sys
p = sys.argv[1]
f = bytearray(open(p, "rb").read())
n = struct.unpack_from("<I", f, 12)[0]
names = 64 + 128 * n
for i in range(n):
    e = 64 + 128 * i
    noff, nlen = struct.unpack_from("<QI", f, e)
    off, stored = struct.unpack_from("<QQ", f, e + 88)
    if b".experts." in f[names + noff:names + noff + nlen] and stored:
        f[off + stored // 2] ^= 8
open(p, "wb").write(f)
EOF
    refused "moe experts, streamed" "layer.00000.airc" ".experts." -- --mem-budget 0 "$S/c"
    refused "moe experts, resident" "layer.00000.airc" ".experts." -- "$S/c"
fi

# ---- format 1.1 files (as written before 1.2) ----
# Downgrade: drop the check block, clear its offset, version 1.0 / 1.1, and
# the manifest's sizes and digests to match.
downgrade() {
    python3 - "$1" <<'EOF'
import hashlib, json, os, struct, sys
d = sys.argv[1]
mp = os.path.join(d, "manifest.json")
m = json.load(open(mp))
quant = False
for u in m["units"]:
    if "file" not in u:
        continue
    p = os.path.join(d, u["file"])
    f = bytearray(open(p, "rb").read())
    n = struct.unpack_from("<I", f, 12)[0]
    q = any(struct.unpack_from("<H", f, 64 + 128 * i + 14)[0] >= 2 for i in range(n))
    quant |= q
    check = struct.unpack_from("<Q", f, 48)[0]
    f = f[:check]
    struct.pack_into("<H", f, 10, 1 if q else 0)
    struct.pack_into("<Q", f, 40, check)
    struct.pack_into("<Q", f, 48, 0)
    open(p, "wb").write(f)
    u["size"] = len(f)
    u["sha256"] = hashlib.sha256(f).hexdigest()
m["format_version"] = "1.1" if quant else "1.0"
json.dump(m, open(mp, "w"), indent=1)
EOF
}
for v in raw nf4; do
    rm -rf "$S/old" && cp -r "$S/$v" "$S/old"
    downgrade "$S/old"
    run 0 "$v 1.x: airllm-verify" "$AIRLLM_VERIFY" "$S/old"
    run 0 "$v 1.x: loads" "$R" --ids 1,2,3 -n 4 "$S/old"
    [ "$(grep -c "without checksums" "$S/last.err")" -eq 1 ] &&
        ok "$v 1.x: one line says the loads are unchecked" ||
        bad "$v 1.x: notice: $(cat "$S/last.err")"
    cp "$S/last.out" "$S/old.out"
    run 0 "$v 1.2: loads" "$R" --ids 1,2,3 -n 4 "$S/$v"
    cmp -s "$S/last.out" "$S/old.out" && ok "$v 1.x: same output as 1.2" ||
        bad "$v 1.x: output differs from 1.2"
    if grep -q "without checksums" "$S/last.err"; then bad "$v 1.2: notice given"; else ok "$v 1.2: no notice"; fi
    run 0 "$v 1.x: --verify-load=full" "$R" --ids 1,2,3 -n 4 --verify-load=full "$S/old"
    if grep -q "without checksums" "$S/last.err"; then bad "$v 1.x full: notice given"; else ok "$v 1.x full: checked, no notice"; fi
    read -r off stored name_end name < <(largest "$S/old/layer.00003.airc")
    flip "$S/old/layer.00003.airc" $((off + stored / 2)) 3
    refused "$v 1.x damaged, --verify-load=full" "layer.00003.airc" "SHA-256 differs" -- \
        --verify-load=full --mem-budget 0 "$S/old"
    refused "$v 1.x damaged, --verify-load" "layer.00003.airc" "SHA-256 differs" -- \
        --verify-load "$S/old"
done

finish
