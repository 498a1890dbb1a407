// Untrusted decoding in a child process (data/ readers; eval/ reads embeddings files so).
//
// GDCM (built with assertions, as Debian ships it) aborts the whole process on
// some truncated or mutated DICOM files, and a crafted file can make a decoder
// allocate gigabytes or spin. run() has a child process run the work under a
// memory limit (RLIMIT_AS: its address space at the start plus `memory_mb`) and
// a wall-clock limit, and passes its result back through a pipe. A child that
// crashes, runs out of memory or time costs one input (m3ret::InputError naming
// it), never the job.
//
// The child is forked by the fork server (core/fork_server.h) that main() starts
// while the process has one thread, so it inherits no lock that another thread
// held. The work is therefore a function and its arguments as bytes, not a
// closure: the child is a copy of the process at its start, not of its present
// state. Without a server (a forked copy of a process, or a main() that did not
// start one) run() forks this process, only while no thread is in a LibraryScope.
#pragma once

#include <cstdint>
#include <vector>
#include <string>

namespace m3ret::data::isolate {

struct Limits {
  int64_t timeout_s = 120;
  int64_t memory_mb = 8192;
  // How the errors name the work and the settings that set the limits (none when empty).
  std::string task = "decoding";
  std::string timeout_setting = "preprocess.decode_timeout_s";
  std::string memory_setting = "preprocess.decode_memory_mb";
};

// What a child runs: the bytes it returns are run()'s result.
using Task = std::string (*)(const std::string& args);

// Runs task(args) in a child process and returns the bytes it returned. Throws:
//  - m3ret::InputError when the task threw one (its path and reason), or
//    InputError(path, reason) when the child
//    died on a signal ("the decoder crashed (Aborted) ..."), ran out of
//    memory (std::bad_alloc under the limit) or of time (killed);
//  - m3ret::Error for any other exception of the task (its message), or when
//    the process cannot fork or make a pipe.
// The child closes every inherited descriptor but its pipe, calls only the
// task, and leaves with _exit (no atexit handlers, no MPI finalisation); it is
// killed when the process that started it dies.
// Thread-safe: several threads may run() at once. Without a fork server each
// forks only while no thread is inside a LibraryScope, and throws m3ret::Error
// when called inside one.
std::string run(const std::string& path, Task task, const std::string& args, const Limits& limits);

// run() for a check whose only result is an error: an m3ret::Error that work(args) throws (an
// InputError too) is thrown again here as an m3ret::Error with the same message; a child that
// crashed or ran out of memory or time is an InputError, as in run().
void check(const std::string& path, void (*work)(const std::string& args), const std::string& args,
           const Limits& limits);

// Arguments as bytes: pack() joins strings (any bytes), unpack() splits them again; unpack
// throws m3ret::Error on bytes that pack() did not make.
std::string pack(const std::vector<std::string>& parts);
std::vector<std::string> unpack(const std::string& bytes);

// Held around in-process calls into the libraries that decoding children call (ITK and GDCM:
// data/reader.h's decoding, the image writers). It matters only without a fork server: run()
// then forks this process, only while no thread holds a scope, so that a child never inherits
// a lock of such a library that another thread held at the fork (it would wait for it until its
// time limit; ITK's ImageIOFactory lock did). Children that read HDF5 are forked while holding
// the HDF5 lock (sharding/hdf5_util.h) instead. Such a fork waits for the scopes open when it
// starts; scopes opened while it waits wait for it (no thread starves a fork). Nested scopes of
// one thread count once. Cheap (a mutex, no system call).
class LibraryScope {
 public:
  LibraryScope();
  ~LibraryScope();
  LibraryScope(const LibraryScope&) = delete;
  LibraryScope& operator=(const LibraryScope&) = delete;
};

}  // namespace m3ret::data::isolate
