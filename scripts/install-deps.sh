#!/usr/bin/env bash
# Installs the build and test dependencies from Debian's packages. Does
# nothing when they are all present already, so it is cheap to call first.
#
#   scripts/install-deps.sh           build, test, man pages, .deb packaging
#   scripts/install-deps.sh --arm64   also the arm64 cross build: Debian's
#                                     gcc-aarch64-linux-gnu, the arm64 -dev
#                                     packages (multiarch) and qemu-user to run
#                                     what it builds
#
# Every apt step of the project is here, so a fresh Debian machine needs
# nothing else. Exit status: 0 when everything asked for is installed.
set -euo pipefail
arm64=0
case "${1:-}" in
    "") ;;
    --arm64) arm64=1 ;;
    *) echo "usage: $0 [--arm64]" >&2; exit 2 ;;
esac

# help2man makes the man pages from each tool's --help at build time; man-db
# renders them (the man page test, `man airllm-split`); file and dpkg-dev
# are what CPack's .deb generator runs (dpkg-shlibdeps for the dependencies).
pkgs=(build-essential cmake pkg-config libzstd-dev libssl-dev libcjson-dev libxxhash-dev clang
      libclang-rt-dev python3 python3-jsonschema python3-venv zstd time openssl
      help2man man-db file dpkg-dev libmicrohttpd-dev)
if [ $arm64 -eq 1 ]; then
    # The arm64 libraries sit beside the amd64 ones (/usr/lib/aarch64-linux-gnu),
    # which is where the toolchain file (cmake/aarch64-linux-gnu.cmake) and
    # dpkg-shlibdeps look for them.
    pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
           libzstd-dev:arm64 libssl-dev:arm64 libcjson-dev:arm64 libxxhash-dev:arm64)
fi
missing=()
for p in "${pkgs[@]}"; do
    # dpkg-query's status, not dpkg -s's exit code: a package removed but not
    # purged ("deinstall ok config-files") is missing too.
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$st" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
if [ $arm64 -eq 1 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "adding the arm64 architecture to dpkg (multiarch)" >&2
    $sudo dpkg --add-architecture arm64
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
