// File-system helpers that keep partial files invisible.
#pragma once

#include <filesystem>
#include <string>

namespace m3ret::fs {

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

}  // namespace m3ret::fs
