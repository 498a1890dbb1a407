# M3RET_SANITIZE: build every m3ret target (libraries, the m3ret binary, the tests) with
# sanitizers. "" (default): none; "address,undefined": ASan + UBSan; "thread": TSan.
# UBSan does not recover, so undefined behaviour fails the test that hits it.
set(M3RET_SANITIZE "" CACHE STRING "Sanitizers: empty, address,undefined, or thread")
set_property(CACHE M3RET_SANITIZE PROPERTY STRINGS "" "address,undefined" "thread")

if(M3RET_SANITIZE)
  if(NOT M3RET_SANITIZE MATCHES "^(address,undefined|undefined,address|address|undefined|thread)$")
    message(FATAL_ERROR
      "M3RET_SANITIZE='${M3RET_SANITIZE}': use address,undefined or thread (or leave it empty)")
  endif()
  set(_m3ret_san_flags -fsanitize=${M3RET_SANITIZE} -fno-omit-frame-pointer)
  if(M3RET_SANITIZE MATCHES "undefined")
    list(APPEND _m3ret_san_flags -fno-sanitize-recover=undefined)
  endif()
  if(M3RET_SANITIZE STREQUAL "thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # Boost.Asio's scheduler uses std::atomic_thread_fence, which GCC warns TSan does not model
    # (-Wtsan); the warning is about Boost's code, not ours, and must not fail -Werror builds.
    list(APPEND _m3ret_san_flags -Wno-tsan)
  endif()
  add_compile_options(${_m3ret_san_flags})
  add_link_options(${_m3ret_san_flags})
  message(STATUS "m3ret: sanitizers ${M3RET_SANITIZE}")
endif()
