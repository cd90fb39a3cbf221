# What `cmake --install` puts where (GNUInstallDirs), and the pieces only an
# install needs: the shared library, airllm.pc, the man pages. Included by
# the top CMakeLists.txt after the targets are defined. Three install
# components; cmake/Packaging.cmake turns the first two into .deb packages:
#   tools  the four programs, libairllm.so.N, the man pages
#   dev    the public headers, libairllm.a, the libairllm.so link, airllm.pc
#   cuda   airllm-cuda.so, when built: it links the CUDA toolkit's own
#          libraries, which no Debian package provides, so it is built and
#          installed on the machine that has them (docs/install.md)
include(GNUInstallDirs)

# ---- the shared library ----------------------------------------------------
# The tools link the static library; the shared one is for other programs
# (through airllm.pc). It is compiled from airllm's own source list, read
# here, so a file added to lib/ joins both. Off by default in the sanitizer
# and fuzz builds: nobody installs those, and it would compile lib/ twice.
if(AIRLLM_SANITIZE OR AIRLLM_TSAN OR AIRLLM_FUZZ)
  set(_airllm_shared_default OFF)
else()
  set(_airllm_shared_default ON)
endif()
option(AIRLLM_SHARED_LIB "Also build libairllm.so (installed with the static library)"
       ${_airllm_shared_default})

get_target_property(_airllm_sources airllm SOURCES)
if(AIRLLM_SHARED_LIB)
  add_library(airllm_shared SHARED ${_airllm_sources})
  # libairllm.so.0.1: before 1.0 a minor version may change the ABI.
  set_target_properties(airllm_shared PROPERTIES OUTPUT_NAME airllm
                        VERSION ${PROJECT_VERSION}
                        SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
  target_include_directories(airllm_shared PUBLIC
                             $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/lib>)
  target_link_libraries(airllm_shared PRIVATE PkgConfig::ZSTD PkgConfig::CJSON
                        PkgConfig::XXHASH OpenSSL::Crypto Threads::Threads m)
endif()

# ---- public headers --------------------------------------------------------
# What a program needs to read a converted directory: the manifest, the unit
# files' headers and checks, the dtypes, zstd decoding and dequantization,
# the hashes, and the error type they all return. Each one's own includes
# are in the list (a test compiles every header alone against the install).
set(AIRLLM_PUBLIC_HEADERS
  lib/airllm_err.h
  lib/airllm_dtype.h
  lib/airllm_quant.h
  lib/airllm_container.h
  lib/airllm_hash.h
  lib/airllm_codec.h
  lib/airllm_manifest.h
)

# ---- airllm.pc -------------------------------------------------------------
# Relocatable: prefix is found from the .pc file's own place, so the same
# file serves /usr, /usr/local and `cmake --install --prefix DIR`.
file(RELATIVE_PATH AIRLLM_PC_TO_PREFIX "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig"
     "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/$" "" AIRLLM_PC_TO_PREFIX "${AIRLLM_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/airllm.pc.in ${CMAKE_BINARY_DIR}/airllm.pc @ONLY)

# ---- the CUDA module's installed place -------------------------------------
# airllm-run looks beside itself first (the build tree), then here, as a
# path relative to its own directory so that a moved prefix still works:
# bin/ -> lib/<multiarch>/airllm/ (runner/rt_cuda_loader.c).
set(AIRLLM_MODULE_DIR ${CMAKE_INSTALL_LIBDIR}/airllm)
file(RELATIVE_PATH _airllm_module_rel "${CMAKE_INSTALL_FULL_BINDIR}"
     "${CMAKE_INSTALL_PREFIX}/${AIRLLM_MODULE_DIR}")
target_compile_definitions(airllm_rt PRIVATE
                           AIRLLM_CUDA_MODULE_RELDIR="${_airllm_module_rel}")

# ---- man pages -------------------------------------------------------------
# Made by help2man from each tool's --help and --version, plus the sections
# in docs/man/TOOL.h2m: one source, so a page cannot miss an option the
# tool has (tests/man.sh checks it). A cross build runs the tools through
# its emulator (CMAKE_CROSSCOMPILING_EMULATOR, qemu-user).
set(AIRLLM_MAN AUTO CACHE STRING "Build the man pages with help2man: AUTO, ON or OFF")
set(AIRLLM_MAN_ENABLED OFF)
set(AIRLLM_TOOLS airllm-split airllm-quant airllm-verify airllm-run)
if(TARGET airllm-serve) # built when libmicrohttpd is there (CMakeLists.txt)
  list(APPEND AIRLLM_TOOLS airllm-serve)
endif()
if(NOT AIRLLM_MAN STREQUAL "OFF")
  find_program(HELP2MAN help2man)
  set(_man_runner "")
  if(CMAKE_CROSSCOMPILING)
    set(_man_runner ${CMAKE_CROSSCOMPILING_EMULATOR})
  endif()
  if(NOT HELP2MAN)
    set(_man_why "help2man not found (scripts/install-deps.sh installs it)")
  elseif(CMAKE_CROSSCOMPILING AND NOT _man_runner)
    set(_man_why "a cross build without CMAKE_CROSSCOMPILING_EMULATOR cannot run --help")
  else()
    set(AIRLLM_MAN_ENABLED ON)
  endif()
  if(NOT AIRLLM_MAN_ENABLED)
    if(AIRLLM_MAN STREQUAL "ON")
      message(FATAL_ERROR "AIRLLM_MAN=ON but ${_man_why}")
    endif()
    message(STATUS "airllm: no man pages: ${_man_why}")
  endif()
endif()
if(AIRLLM_MAN_ENABLED)
  set(_man_pages "")
  foreach(tool ${AIRLLM_TOOLS})
    set(page ${CMAKE_BINARY_DIR}/man/${tool}.1)
    add_custom_command(
      OUTPUT ${page} ${page}.gz
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
      COMMAND sh ${PROJECT_SOURCE_DIR}/cmake/help2man.sh ${HELP2MAN}
              ${PROJECT_SOURCE_DIR}/docs/man/${tool}.h2m ${page}
              $<TARGET_FILE:${tool}> ${_man_runner}
      DEPENDS ${tool} ${PROJECT_SOURCE_DIR}/docs/man/${tool}.h2m
              ${PROJECT_SOURCE_DIR}/cmake/help2man.sh
      COMMENT "man page ${tool}.1"
      VERBATIM)
    list(APPEND _man_pages ${page})
    install(FILES ${page}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT tools)
  endforeach()
  add_custom_target(man ALL DEPENDS ${_man_pages})
endif()

# ---- install rules ---------------------------------------------------------
install(TARGETS ${AIRLLM_TOOLS} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)
if(AIRLLM_CUDA_ENABLED)
  # The toolkit's lib directory as the installed module's rpath: libcudart
  # and libcublas are often not on the loader's path (/usr/local/cuda).
  set_target_properties(airllm-cuda PROPERTIES INSTALL_RPATH "${CUDAToolkit_LIBRARY_DIR}")
  install(TARGETS airllm-cuda LIBRARY DESTINATION ${AIRLLM_MODULE_DIR} COMPONENT cuda)
endif()
install(TARGETS airllm ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
if(AIRLLM_SHARED_LIB)
  install(TARGETS airllm_shared
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT tools NAMELINK_SKIP)
  install(TARGETS airllm_shared
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev NAMELINK_ONLY)
endif()
install(FILES ${AIRLLM_PUBLIC_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/airllm
        COMPONENT dev)
install(FILES ${CMAKE_BINARY_DIR}/airllm.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
        COMPONENT dev)
