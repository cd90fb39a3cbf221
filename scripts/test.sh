#!/usr/bin/env bash
# The whole test suite: the normal build's tests, the same tests under
# AddressSanitizer + UndefinedBehaviorSanitizer, the threaded paths under
# ThreadSanitizer, each libFuzzer target for a short run, and the arm64
# .deb cross-built and run under qemu-user. Exits non-zero if anything fails.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh" || exit 1
status=0

echo "== build and test (RelWithDebInfo)"
"$root/scripts/build.sh" "$root/build" || exit 1
(cd "$root/build" && ctest --output-on-failure -j "$(nproc)") || status=1

echo "== build and test with ASan + UBSan"
# The sanitizers check the host code; the CUDA sources are compiled (and,
# with a GPU, run) by the normal build.
"$root/scripts/build.sh" "$root/build-asan" -DAIRLLM_SANITIZE=ON -DAIRLLM_CUDA=OFF || exit 1
(cd "$root/build-asan" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -j "$(nproc)") || status=1

echo "== ThreadSanitizer: the threaded paths (tests/threads.sh, the pool's unit test)"
"$root/scripts/build.sh" "$root/build-tsan" -DAIRLLM_TSAN=ON -DAIRLLM_CUDA=OFF || exit 1
(cd "$root/build-tsan" && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
    ctest --output-on-failure -R '^(threads|test_pool)$') || status=1

echo "== fuzz targets (clang libFuzzer, ${AIRLLM_FUZZ_SECONDS:-20} s each)"
CC=clang "$root/scripts/build.sh" "$root/build-fuzz" -DAIRLLM_FUZZ=ON -DAIRLLM_SANITIZE=ON -DAIRLLM_CUDA=OFF \
    -DAIRLLM_FUZZ_SECONDS="${AIRLLM_FUZZ_SECONDS:-20}" || exit 1
(cd "$root/build-fuzz" && ctest --output-on-failure -R '^fuzz_') || status=1

echo "== arm64: the cross-built .deb's tools and the kernels' unit tests under qemu-user"
# scripts/test_arm64.sh prints SKIP and passes only where the cross
# toolchain cannot be installed.
"$root/scripts/test_arm64.sh" "$root/build" || status=1

[ $status -eq 0 ] && echo "ALL TESTS PASSED" || echo "SOME TESTS FAILED"
exit $status
