# Cross build for arm64 (aarch64) with Debian's cross compiler and the
# arm64 -dev packages installed beside the native ones (multiarch), as
# `scripts/install-deps.sh --arm64` sets up:
#
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
#
# The arm64 headers and libraries are in /usr/include/aarch64-linux-gnu and
# /usr/lib/aarch64-linux-gnu, where aarch64-linux-gnu-gcc already looks;
# pkg-config is pointed at the arm64 .pc files only. With qemu-user
# installed, the built programs and tests run through qemu-aarch64
# (CMAKE_CROSSCOMPILING_EMULATOR: ctest's C unit tests, and help2man for
# the man pages).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# pkg_check_modules runs while configuring, which is when this file is read.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

# Programs are the build machine's; libraries and headers the target's
# (find_library also searches lib/aarch64-linux-gnu by CMAKE_LIBRARY_ARCHITECTURE).
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

# qemu-aarch64 runs the programs with the arm64 libc that multiarch installs
# (libc6:arm64, which the arm64 -dev packages depend on): its loader is
# /lib/ld-linux-aarch64.so.1, so no -L is needed. -L /usr/aarch64-linux-gnu
# would take the cross toolchain's ld.so (libc6-arm64-cross, another build of
# glibc) and pair it with libc6:arm64's libc.so.6 from the multiarch
# directory: threaded programs then hang in their first pthread_create
# (airllm-split, airllm-run with more than one thread). That prefix is used
# only where there is no multiarch libc, so both halves come from it.
find_program(AIRLLM_QEMU_AARCH64 qemu-aarch64)
if(AIRLLM_QEMU_AARCH64)
  if(EXISTS /lib/ld-linux-aarch64.so.1)
    set(CMAKE_CROSSCOMPILING_EMULATOR ${AIRLLM_QEMU_AARCH64})
  else()
    set(CMAKE_CROSSCOMPILING_EMULATOR ${AIRLLM_QEMU_AARCH64} -L /usr/aarch64-linux-gnu)
  endif()
endif()
