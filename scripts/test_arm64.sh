#!/usr/bin/env bash
# The arm64 package under qemu-user (scripts/test.sh runs this): cross-builds
# the .deb packages (scripts/package.sh arm64), unpacks airllm_*_arm64.deb and
# runs its binaries through qemu-aarch64 on ../shared/models/stories260K:
# split (byte-identical to the native split), verify, a greedy run with ids
# identical to ../shared/golden (resident and streamed), quant (NEON and
# scalar kernels byte-identical, and identical to the native quant) and a
# run of the nf4 model; checks that the NEON kernels are the ones picked and
# agree with the scalar reference; and runs the C unit tests of the kernels
# (test_matmul, test_matmul_q8: the int8 path's reference, test_quant) and
# containers under qemu.
#
#   scripts/test_arm64.sh [NATIVE_BUILD_DIR]
#
# NATIVE_BUILD_DIR (default build/) holds native tools to compare with; the
# comparisons are skipped, with a line saying so, when it has none. Prints
# a SKIP line and exits 0 only when the cross toolchain cannot be installed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
native=${1:-$root/build}
bdir=$root/build-arm64
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "$root/scripts/install-deps.sh" --arm64 >"$log" 2>&1; then
    echo "SKIP: arm64 checks: the cross toolchain (gcc-aarch64-linux-gnu, arm64 -dev" \
         "packages, qemu-user) could not be installed: $(tail -c 300 "$log")"
    exit 0
fi
debs=$("$root/scripts/package.sh" arm64 "$bdir" 2>"$log") || {
    echo "FAIL: arm64 cross build and packaging: $(tail -c 1500 "$log")"
    exit 1
}
deb=$(echo "$debs" | grep '/airllm_[^/]*_arm64\.deb$')

# The tools' environment for tests/testlib.sh: wrappers that run the
# package's binaries under qemu (the same choice of loader prefix as
# cmake/aarch64-linux-gnu.cmake).
export SHARED_DIR=${SHARED_DIR:-$root/../shared} SRC_DIR=$root
S=$bdir/test-scratch/arm64
rm -rf "$S" && mkdir -p "$S/wrap"
qemu=(qemu-aarch64)
[ -e /lib/ld-linux-aarch64.so.1 ] || qemu+=(-L /usr/aarch64-linux-gnu)
dpkg-deb -x "$deb" "$S/root" || { echo "FAIL: dpkg-deb -x $deb"; exit 1; }
for t in split quant verify run; do
    printf '#!/bin/sh\nexec %s %s "$@"\n' "${qemu[*]}" "$S/root/usr/bin/airllm-$t" \
        >"$S/wrap/airllm-$t"
    chmod +x "$S/wrap/airllm-$t"
done
export AIRLLM_SPLIT=$S/wrap/airllm-split AIRLLM_QUANT=$S/wrap/airllm-quant
export AIRLLM_VERIFY=$S/wrap/airllm-verify AIRLLM_RUN=$S/wrap/airllm-run
. "$root/tests/testlib.sh" "$S/t"
T=$SCRATCH
GOLD=$SHARED_DIR/golden/stories260K.json

echo "info: $(basename "$deb"): $(dpkg-deb -f "$deb" Depends)"
file -L "$S/root/usr/bin/airllm-run" | grep -q "ARM aarch64" && ok "the package's airllm-run is arm64" ||
    bad "airllm-run is not arm64: $(file -L "$S/root/usr/bin/airllm-run")"
run 0 "airllm-split --version under qemu" "$AIRLLM_SPLIT" --version

# ---- split, verify, greedy run ----
run 0 "arm64 airllm-split stories260K" "$AIRLLM_SPLIT" -q "$MODELS/stories260K" "$T/f32"
run 0 "arm64 airllm-verify --against the source" \
    "$AIRLLM_VERIFY" -q --against "$MODELS/stories260K" "$T/f32"
golden "$T/f32" "$GOLD" 1e-3
golden "$T/f32" "$GOLD" 1e-3 -- --mem-budget 0
golden "$T/f32" "$GOLD" 1e-3 --batch -- --mem-budget 0
if [ -x "$native/airllm-split" ]; then
    "$native/airllm-split" -q "$MODELS/stories260K" "$T/f32_native"
    cmp -s "$T/f32/manifest.json" "$T/f32_native/manifest.json" &&
        ok "arm64 split = native split (manifest.json and every digest in it)" ||
        bad "arm64 split's manifest.json differs from the native one"
else
    echo "info: no native tools in $native: cross-architecture comparisons skipped"
fi

# ---- the kernels dispatch picks: NEON, and it agrees with the reference ----
# The same greedy run with the matmul kernels forced to neon, to scalar, and
# left to choose: choosing must give neon's logits to the bit (and scalar's
# differ in their rounding), and all three the golden ids.
for impl in neon scalar auto; do
    env_impl=$impl
    [ $impl = auto ] && env_impl=
    AIRLLM_MM_IMPL=$env_impl "$AIRLLM_RUN" -q --json --ids 1 -n 24 --dump-logits "$T/$impl.bin" \
        "$T/f32" >"$T/$impl.json" 2>"$T/$impl.err" || bad "run with AIRLLM_MM_IMPL=$impl: $(head -c 300 "$T/$impl.err")"
done
AIRLLM_MM_IMPL=neon golden "$T/f32" "$GOLD" 1e-3
AIRLLM_MM_IMPL=scalar golden "$T/f32" "$GOLD" 1e-3
if cmp -s "$T/auto.bin" "$T/neon.bin" && ! cmp -s "$T/neon.bin" "$T/scalar.bin"; then
    ok "the runner picks the NEON kernels (its logits are NEON's bit for bit, not scalar's)"
else
    bad "auto logits are not NEON's (auto=neon: $(cmp -s "$T/auto.bin" "$T/neon.bin" && echo yes || echo no), neon=scalar: $(cmp -s "$T/neon.bin" "$T/scalar.bin" && echo yes || echo no))"
fi

# ---- quant: NEON = scalar = native, byte for byte ----
run 0 "arm64 airllm-quant -t nf4 (NEON kernels)" "$AIRLLM_QUANT" -q -t nf4 "$T/f32" "$T/nf4"
AIRLLM_QUANT_IMPL=scalar run 0 "arm64 airllm-quant -t nf4 with the scalar kernels" \
    "$AIRLLM_QUANT" -q -t nf4 "$T/f32" "$T/nf4_scalar"
cmp -s "$T/nf4/manifest.json" "$T/nf4_scalar/manifest.json" &&
    ok "nf4: NEON and scalar quantization byte-identical" || bad "nf4: NEON differs from scalar"
run 0 "arm64 airllm-quant -t int8" "$AIRLLM_QUANT" -q -t int8 "$T/f32" "$T/int8"
run 0 "arm64 airllm-verify --against the source (nf4)" \
    "$AIRLLM_VERIFY" -q --against "$MODELS/stories260K" "$T/nf4"
"$AIRLLM_RUN" -q --json --ids 1 -n 24 "$T/nf4" >"$T/nf4_run.json" 2>"$T/nf4_run.err" &&
    ok "arm64 airllm-run on the nf4 model" || bad "nf4 run: $(head -c 300 "$T/nf4_run.err")"
if [ -x "$native/airllm-quant" ]; then
    "$native/airllm-quant" -q -t nf4 "$T/f32_native" "$T/nf4_native"
    cmp -s "$T/nf4/manifest.json" "$T/nf4_native/manifest.json" &&
        ok "arm64 nf4 = native nf4 (manifest.json and every digest in it)" ||
        bad "arm64 nf4 differs from the native quantization"
    "$native/airllm-run" -q --json --ids 1 -n 24 "$T/nf4_native" >"$T/nf4_native_run.json" 2>/dev/null
    python3 - "$T/nf4_run.json" "$T/nf4_native_run.json" <<'EOF' &&
import json, sys
a, b = (json.loads(open(p).readline())["generated_ids"] for p in sys.argv[1:])  # result lines
assert a == b, (a, b)
EOF
        ok "nf4 greedy ids: arm64 = native" || bad "nf4 greedy ids differ between arm64 and native"
fi

# ---- the C unit tests of kernels and containers, under qemu (ctest runs
# them through CMAKE_CROSSCOMPILING_EMULATOR) ----
tests='^test_(matmul|matmul_q8|quant|container|codec|manifest|safetensors)$'
if cmake --build "$bdir" -j "$(nproc)" --target test_matmul test_matmul_q8 test_quant \
        test_container test_codec test_manifest test_safetensors >"$T/build.log" 2>&1 &&
    (cd "$bdir" && ctest -V -R "$tests") >"$T/ctest.log" 2>&1; then
    ok "unit tests under qemu: $(grep -oE '[0-9]+% tests passed.*' "$T/ctest.log")"
else
    bad "unit tests under qemu: $(tail -c 1500 "$T/build.log") $(grep -E 'FAIL|Failed' "$T/ctest.log" | head -c 1500)"
fi
grep -E "implementations" "$T/ctest.log" | sed 's/^[0-9]*: /info: /'
grep -q "(auto: neon)" "$T/ctest.log" && ok "quantization picks NEON (test_quant)" ||
    bad "test_quant does not pick neon"
grep -q "implementations: scalar neon" "$T/ctest.log" &&
    ok "test_matmul checks the NEON kernels against the reference" ||
    bad "test_matmul did not test neon"

finish
