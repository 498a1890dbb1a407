// File-system helpers that keep partial files invisible.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace m3ret::fs {

// Writes one file through a file descriptor and checks every write, the fsync
// and the close, so that a full disk (ENOSPC, EDQUOT, EIO) is an Error naming
// the path, never a silently short file. write() records the first error and
// then discards further bytes (it never throws: it can sit under a library's
// serialiser, e.g. torch's archive writer); finish() fsyncs, closes and throws
// the recorded error. A writer that is destroyed unfinished, or whose finish()
// failed, removes its file; the destructor never throws.
class FileWriter {
 public:
  // Creates (truncates) `path`; throws m3ret::Error naming it on failure.
  explicit FileWriter(std::filesystem::path path);
  ~FileWriter();
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;

  // Returns n (the bytes are accepted or, after an error, dropped).
  size_t write(const void* data, size_t n) noexcept;
  void finish();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  int error_ = 0;  // errno of the first failure
};

// Fault injection for tests: after `bytes` more bytes went through FileWriter
// (and so write_atomic), writes fail with ENOSPC as on a full disk.
// Negative: no limit (the default).
void set_write_budget_for_testing(int64_t bytes);

// Writes `content` to `path` atomically: into a temporary file in the same
// folder, fsync'ed, then renamed over `path`. Throws m3ret::Error naming the
// path on failure; never leaves a partial file under `path`.
void write_atomic(const std::filesystem::path& path, const std::string& content);

// A temporary sibling name for `path` ("<name>.tmp-<pid>-<n>") for writers
// that produce the file themselves (HDF5) and then call commit().
std::filesystem::path temp_sibling(const std::filesystem::path& path);

// fsyncs `tmp` and renames it to `path` (atomic on POSIX file systems).
void commit(const std::filesystem::path& tmp, const std::filesystem::path& path);

// Reads a whole file; throws m3ret::Error naming the path.
std::string read_file(const std::filesystem::path& path);

// Integrity checksum (zlib's CRC-32 over the bytes) as "crc32:xxxxxxxx".
// Detects truncation and corruption; not a cryptographic hash.
std::string checksum_file(const std::filesystem::path& path);
std::string checksum_bytes(const void* data, size_t size);

// What a verb found of earlier output in the folder it writes, and how to go
// on (the rule every verb that writes a folder follows: re-running never
// destroys silently).
struct EarlierOutput {
  std::string verb;                          // "train"
  std::string option;                        // the folder's flag: "--run-dir"
  std::string what;                          // "a run"
  std::vector<std::filesystem::path> found;  // what was found (the first is named, if any)
  std::string resume;          // "continue it with --resume auto" ("": no such choice)
  std::string overwrite_does;  // "which deletes them"
  std::vector<std::filesystem::path> remove;  // deleted by --overwrite
};

// Without `overwrite`, throws an Error naming the folder, what it holds and
// the choices: "train: RUN already holds a run (checkpoints); continue it with
// --resume auto, or start over in a new --run-dir or with --overwrite (which
// deletes them)". With `overwrite`, deletes e.remove (each logged).
void refuse_or_overwrite(const std::filesystem::path& dir, const EarlierOutput& e, bool overwrite);

// Writes all `n` bytes to descriptor `fd`, retrying interrupted and short writes; false (errno
// set) on an error.
bool write_all(int fd, const void* data, size_t n) noexcept;

// Closes every descriptor from 3 up but `keep`: what a forked child does so as to hold none of
// its parent's (pipes, sockets, MPI's, HDF5's).
void close_descriptors_except(int keep) noexcept;

}  // namespace m3ret::fs
