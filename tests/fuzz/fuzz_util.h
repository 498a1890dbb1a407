// Shared by the libFuzzer targets (tests/fuzz/fuzz_*.cc).
//
// Our readers take paths, so each input is written to a file in a folder of
// this process (under /dev/shm when it exists). An input may be refused only
// with m3ret::Error (the clear error every bad input must get); any other
// exception is a finding: it is printed and the process aborts, so libFuzzer
// records the input as a crash.
#pragma once

#include <pthread.h>
#include <sanitizer/common_interface_defs.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <typeinfo>

#include "core/error.h"

namespace m3ret::fuzz {

inline const std::filesystem::path& scratch_dir() {
  // Never destroyed: the exit handler that removes the folder runs after static destructors.
  static const std::filesystem::path* dir = [] {
    const std::filesystem::path base = std::filesystem::is_directory("/dev/shm")
                                           ? std::filesystem::path("/dev/shm")
                                           : std::filesystem::temp_directory_path();
    auto* d = new std::filesystem::path(base / ("m3ret-fuzz-" + std::to_string(::getpid())));
    std::filesystem::create_directories(*d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return d;
  }();
  return *dir;
}

// Writes the input to scratch_dir()/name and returns the path.
inline std::filesystem::path write_input(const std::string& name, const uint8_t* data,
                                         size_t size) {
  const auto path = scratch_dir() / name;
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// Seed corpora of binary formats are written by our own writers: a target whose
// LLVMFuzzerInitialize calls this writes its seeds into the folder named by
// M3RET_FUZZ_WRITE_SEEDS (e.g. tests/fuzz/corpus/<name>) through `write(folder)`, then exits:
//   M3RET_FUZZ_WRITE_SEEDS=tests/fuzz/corpus/embeddings build-fuzz/tests/fuzz/fuzz_embeddings
template <class F>
void write_seeds_if_asked(F&& write) {
  const char* dir = std::getenv("M3RET_FUZZ_WRITE_SEEDS");
  if (!dir || !*dir) return;
  std::filesystem::create_directories(dir);
  write(std::filesystem::path(dir));
  std::exit(0);
}

// Readers of untrusted files that libraries crash on read them in a forked child first
// (data/isolate.h). A sanitizer report there (ASan sees a library's heap overruns through its
// interceptors) ends that child as the crash ends it in a normal build: the file is refused. The
// report is printed, but the child leaves without libFuzzer's death callback, which would
// record the input as a finding of this process. A library's assertion (GDCM's, ITK's) aborts
// the child as in a normal build too: libFuzzer's handlers of SIGABRT, SIGILL and SIGFPE, which
// would record it, are undone there. Call from LLVMFuzzerInitialize.
inline void forked_children_die_quietly() {
  pthread_atfork(nullptr, nullptr, [] {
    __sanitizer_set_death_callback([] { ::_exit(86); });
    for (int sig : {SIGABRT, SIGILL, SIGFPE}) std::signal(sig, SIG_DFL);
  });
}

// Runs `f`; m3ret::Error is an accepted refusal, anything else aborts.
template <class F>
void refuse_only_with_error(F&& f) {
  try {
    f();
  } catch (const m3ret::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz finding: %s escaped instead of m3ret::Error: %s\n", typeid(e).name(),
                 e.what());
    std::abort();
  }
}

}  // namespace m3ret::fuzz
