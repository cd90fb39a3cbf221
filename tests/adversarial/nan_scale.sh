#!/usr/bin/env bash
# A quantized tensor whose block scale is not finite (a broken or crafted
# conversion: the file's own checks can be made to agree with it) is
# refused at its first load, resident or streamed, even with the load
# checks off, naming the file, the tensor and the block: NaN weights would
# only ever print garbage. Under the default check the same bytes are
# refused too (by the scan or by their XXH3, whichever runs first). (A streamed unit's later loads are not rescanned: under
# fast/full their check proves the bytes unchanged, and under off nothing
# about them is checked; runner/rt_store.c says why.)
. "$(dirname "$0")/../testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
: "${AIRLLM_QUANT:?set AIRLLM_QUANT to the airllm-quant binary}"
R=$AIRLLM_RUN
S=$SCRATCH

"$AIRLLM_SPLIT" -q "$MODELS/stories260K" "$S/raw"
"$AIRLLM_QUANT" -q -t nf4 "$S/raw" "$S/nf4"
run 0 "the unharmed nf4 model runs with the checks off" "$R" --ids 1,2,3 -n 4 \
    --verify-load=off "$S/nf4"

# nan FILE BLOCK: writes a NaN over block BLOCK's scale of the first
# quantized tensor (no double quantization) of FILE; prints its name
nan() {
    python3 - "$@" <<'PY'
import math, struct, sys
path, block = sys.argv[1], int(sys.argv[2])
f = bytearray(open(path, "rb").read())
n = struct.unpack_from("<I", f, 12)[0]
names = 64 + 128 * n
for i in range(n):
    e = 64 + 128 * i
    noff, nlen, dtype, enc, ndim = struct.unpack_from("<QIHHI", f, e)
    shape = struct.unpack_from("<8Q", f, e + 24)[:ndim]
    off, stored = struct.unpack_from("<QQ", f, e + 88)
    p0, flags = struct.unpack_from("<II", f, e + 112)
    if enc not in (2, 3, 4) or flags & 1:
        continue
    elems = math.prod(shape)
    codes = (elems + 1) // 2 if enc in (2, 3) else elems
    scales = off + (codes + 63) // 64 * 64
    assert scales + 4 * (block + 1) <= off + stored
    struct.pack_into("<I", f, scales + 4 * block, 0x7FC00000)  # a quiet NaN
    open(path, "wb").write(f)
    print(f[names + noff:names + noff + nlen].decode())
    sys.exit(0)
sys.exit("no quantized tensor in " + path)
PY
}

rm -rf "$S/c" && cp -r "$S/nf4" "$S/c"
name=$(nan "$S/c/layer.00001.airc" 3)
[ -n "$name" ] || bad "no quantized tensor found"
# check DESC ARGS...: the run is refused at the first load, names all three
check() {
    local desc=$1
    shift
    run 1 "NaN scale, $desc: exit 1" "$R" --ids 1,2,3 -n 4 "$@" "$S/c"
    expect_err "layer.00001.airc" "NaN scale, $desc: names the file"
    expect_err "$name: block 3 scale is not finite" "NaN scale, $desc: names the tensor and block"
    if [ -s "$S/last.out" ]; then bad "NaN scale, $desc: printed output: $(head -c 200 "$S/last.out")"; fi
}
check "resident, --verify-load=off" --verify-load=off
check "streamed, --verify-load=off" --verify-load=off --mem-budget 0
check "streamed, no prefetch, --verify-load=off" --verify-load=off --mem-budget 0 --no-prefetch
# With the default check, whichever comes first refuses it: the scan (a
# streamed first load decodes before its deferred XXH3) or the XXH3.
run 1 "NaN scale, default check, streamed: exit 1" "$R" --ids 1,2,3 -n 4 --mem-budget 0 "$S/c"
expect_err "$name" "NaN scale, default check: names the tensor"
run 1 "NaN scale, default check, resident: exit 1" "$R" --ids 1,2,3 -n 4 "$S/c"
expect_err "$name" "NaN scale, default check, resident: names the tensor"
finish
