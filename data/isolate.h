// Untrusted decoding in a child process (data/ readers; eval/ reads embeddings files so).
//
// GDCM (built with assertions, as Debian ships it) aborts the whole process on
// some truncated or mutated DICOM files, and a crafted file can make a decoder
// allocate gigabytes or spin. run() forks, runs the work in the child under a
// memory limit (RLIMIT_AS: the parent's current address space plus
// `memory_mb`) and a wall-clock limit, and passes its result back through a
// pipe. A child that crashes, runs out of memory or time costs one input
// (m3ret::InputError naming it), never the job.
#pragma once

#include <cstdint>
#include <functional>
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

// Runs work() in a forked child and returns the bytes it returned. Throws:
//  - m3ret::InputError when work() threw one (its path and reason), or
//    InputError(path, reason) when the child
//    died on a signal ("the decoder crashed (Aborted) ..."), ran out of
//    memory (std::bad_alloc under the limit) or of time (killed);
//  - m3ret::Error for any other exception of work() (its message), or when
//    the process cannot fork or make a pipe.
// The child closes every inherited descriptor but its pipe, calls only
// work(), and leaves with _exit (no atexit handlers, no MPI finalisation);
// it is killed when the process that started it dies.
// Thread-safe: several threads may run() at once; each forks only while no thread is inside a
// LibraryScope. Throws m3ret::Error when called inside one.
std::string run(const std::string& path, const std::function<std::string()>& work,
                const Limits& limits);

// Held around in-process calls into the libraries that decoding children call (ITK and GDCM:
// data/reader.h's decoding, the image writers): run() forks only while no thread holds one, so
// a child never inherits a lock of such a library that another thread held at the fork (it
// would wait for it until its time limit; ITK's ImageIOFactory lock did). Children that read
// HDF5 are forked while holding the HDF5 lock (sharding/hdf5_util.h) instead. run() waits
// for the scopes open when it starts; scopes opened while it waits wait for its fork (no thread
// starves a fork). Nested scopes of one thread count once. Cheap (a mutex, no system call).
class LibraryScope {
 public:
  LibraryScope();
  ~LibraryScope();
  LibraryScope(const LibraryScope&) = delete;
  LibraryScope& operator=(const LibraryScope&) = delete;
};

// run() for a check whose only result is an error: an m3ret::Error that work() throws (an
// InputError too) is thrown again here as an m3ret::Error with the same message; a child that
// crashed or ran out of memory or time is an InputError, as in run().
void check(const std::string& path, const std::function<void()>& work, const Limits& limits);

}  // namespace m3ret::data::isolate
