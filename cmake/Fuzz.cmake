# M3RET_FUZZ=ON: libFuzzer targets fuzz_<name> (tests/fuzz/), built with clang, every library
# they use instrumented for coverage and built with ASan + UBSan (UBSan does not recover).
# Configure a separate build folder with clang and build only the fuzzers:
#   CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DM3RET_FUZZ=ON \
#     -DM3RET_BUILD_TESTS=OFF -DM3RET_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
#   cmake --build build-fuzz --target fuzzers
# docs/reliability.md ("Fuzzers") says how to run them.
option(M3RET_FUZZ "Build the libFuzzer targets (clang only)" OFF)
if(M3RET_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "M3RET_FUZZ=ON needs clang (libFuzzer): configure with CC=clang "
                        "CXX=clang++ (Debian package clang); this build uses ${CMAKE_CXX_COMPILER_ID}")
  endif()
  if(M3RET_SANITIZE)
    message(FATAL_ERROR "M3RET_FUZZ=ON brings its own sanitizers: leave M3RET_SANITIZE empty")
  endif()
  set(_m3ret_fuzz_flags -fsanitize=address,undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer)
  add_compile_options(-fsanitize=fuzzer-no-link ${_m3ret_fuzz_flags})
  # Debian's ITK 5.2 accepts only GCC: tests/fuzz/itk_clang/itk_clang.h lets its headers through.
  add_compile_options(-include ${PROJECT_SOURCE_DIR}/tests/fuzz/itk_clang/itk_clang.h)
  add_link_options(${_m3ret_fuzz_flags})
  message(STATUS "m3ret: fuzzers (libFuzzer, ASan + UBSan)")
endif()
