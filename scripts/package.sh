#!/usr/bin/env bash
# Builds the .deb packages (cmake/Packaging.cmake): airllm (the tools, the
# shared library, the man pages) and libairllm-dev (headers, static
# library, airllm.pc), for this machine's architecture or cross-built for
# arm64 with Debian's gcc-aarch64-linux-gnu and the arm64 -dev packages.
#
#   scripts/package.sh [amd64|arm64] [BUILD_DIR]
#
# BUILD_DIR defaults to build-pkg-ARCH/. Prints the paths of the packages,
# one a line, on stdout (everything else goes to stderr). The packages
# hold no CUDA module: docs/install.md says how to add one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
native=$(dpkg --print-architecture)
arch=${1:-$native}
dir=${2:-$root/build-pkg-$arch}
args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr -DAIRLLM_CUDA=OFF
      -DAIRLLM_MAN=ON)
if [ "$arch" = arm64 ] && [ "$native" != arm64 ]; then
    "$root/scripts/install-deps.sh" --arm64 >&2
    # GNUInstallDirs picks Debian's multiarch libdir only for native builds.
    args+=(-DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake"
           -DCMAKE_INSTALL_LIBDIR=lib/aarch64-linux-gnu)
elif [ "$arch" = "$native" ]; then
    "$root/scripts/install-deps.sh" >&2
else
    echo "usage: $0 [$native|arm64] [BUILD_DIR]" >&2
    exit 2
fi
cmake -S "$root" -B "$dir" "${args[@]}" >&2
# Only what the packages hold (the tests are not packaged).
cmake --build "$dir" -j "$(nproc)" --target airllm-split airllm-quant airllm-verify airllm-run \
    airllm airllm_shared man >&2
rm -f "$dir"/*.deb
(cd "$dir" && cpack -G DEB >&2)
ls "$dir"/*.deb
