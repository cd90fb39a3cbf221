# .deb packages with CPack (cmake/Install.cmake says what goes where):
#   airllm          the tools, libairllm.so.N and the man pages; its Depends
#                   come from dpkg-shlibdeps (libc6, libzstd1, libxxhash0,
#                   libcjson1, libssl3, in Debian's names and versions)
#   libairllm-dev   headers, libairllm.a, airllm.pc; depends on airllm and
#                   the -dev packages airllm.pc names
# The CUDA module is in neither: it links the toolkit's libraries, which
# are not Debian packages (docs/install.md: building it on the machine).
#
# scripts/package.sh configures a build with CMAKE_INSTALL_PREFIX=/usr (so
# the library goes to /usr/lib/<multiarch>) and runs `cpack -G DEB`; for
# arm64 it uses the toolchain file cmake/aarch64-linux-gnu.cmake.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME airllm)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "airllm")
set(CPACK_PACKAGE_CONTACT "airllm maintainers"
    CACHE STRING "the Maintainer field of the .deb packages")
set(_airllm_summary
    "run large language models layer by layer from disk on small GPUs and edge boards")
set(_airllm_description
    "airllm-split converts a Hugging Face safetensors checkpoint into a checksummed
per-layer container directory, airllm-quant quantizes it (nf4, fp4, int8),
airllm-verify checks it and airllm-run generates text with it, streaming one
layer at a time from disk, so a model never needs more memory than one layer
plus the KV cache.")
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_STRIP_FILES ON)

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL tools dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # NAME_VERSION_ARCH.deb
set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME airllm)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libairllm-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "airllm (= ${PROJECT_VERSION}), libzstd-dev, libcjson-dev, libxxhash-dev, libssl-dev")
# Each package's description, its first line the summary (so no
# CPACK_PACKAGE_DESCRIPTION_SUMMARY: CPackDeb would put that line first in
# both packages).
set(CPACK_DEBIAN_TOOLS_DESCRIPTION "${_airllm_summary}\n${_airllm_description}")
set(CPACK_DEBIAN_DEV_DESCRIPTION
    "library and headers for airllm's per-layer model containers
The library that reads and writes the directories airllm-split writes
(manifest.json, unit files, SHA-256 and XXH3 checks, zstd and nf4/fp4/int8
decoding): static and shared, with its headers and airllm.pc.")

# A cross build's packages: the target's Debian architecture, and
# dpkg-shlibdeps told the same (it reads DEB_HOST_ARCH, then looks in
# /usr/lib/<multiarch> and the arm64 packages' symbols files). cpack reads
# the project config file when it runs, so the variable reaches it there.
if(CMAKE_CROSSCOMPILING)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64)$")
    set(AIRLLM_DEB_ARCH arm64)
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|amd64)$")
    set(AIRLLM_DEB_ARCH amd64)
  else()
    message(FATAL_ERROR "no Debian architecture known for ${CMAKE_SYSTEM_PROCESSOR}")
  endif()
  set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE ${AIRLLM_DEB_ARCH})
  configure_file(${PROJECT_SOURCE_DIR}/cmake/CPackCross.cmake.in
                 ${CMAKE_BINARY_DIR}/CPackCross.cmake @ONLY)
  set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_BINARY_DIR}/CPackCross.cmake)
endif()

include(CPack)
