#include "core/fs.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/error.h"

namespace m3ret::fs {

namespace {
std::atomic<int> g_counter{0};
std::atomic<int64_t> g_write_budget{-1};

// Takes n bytes from the test budget; false when it is spent.
bool take_budget(size_t n) {
  int64_t left = g_write_budget.load();
  while (left >= 0) {
    if (static_cast<int64_t>(n) > left) {
      g_write_budget.store(0);
      return false;
    }
    if (g_write_budget.compare_exchange_weak(left, left - static_cast<int64_t>(n))) return true;
  }
  return true;
}

void fsync_path(const std::filesystem::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}
}  // namespace

void set_write_budget_for_testing(int64_t bytes) { g_write_budget.store(bytes); }

FileWriter::FileWriter(std::filesystem::path path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw Error(fmt::format("cannot write {}: {}", path_.string(), std::strerror(errno)));
}

FileWriter::~FileWriter() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(path_.c_str());
}

size_t FileWriter::write(const void* data, size_t n) noexcept {
  const auto* p = static_cast<const char*>(data);
  size_t left = error_ || fd_ < 0 ? 0 : n;
  while (left > 0) {
    if (!take_budget(left)) {
      error_ = ENOSPC;
      break;
    }
    const ssize_t w = ::write(fd_, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      error_ = w < 0 ? errno : ENOSPC;
      break;
    }
    p += w;
    left -= static_cast<size_t>(w);
  }
  return n;
}

void FileWriter::finish() {
  if (fd_ < 0) throw Error(fmt::format("cannot write {}: already finished", path_.string()));
  if (!error_ && ::fsync(fd_) != 0 && errno != EINVAL) error_ = errno;
  if (::close(fd_) != 0 && !error_ && errno != EINTR) error_ = errno;
  fd_ = -1;
  if (error_) {
    ::unlink(path_.c_str());
    throw Error(fmt::format("cannot write {}: {}", path_.string(), std::strerror(error_)));
  }
}

std::filesystem::path temp_sibling(const std::filesystem::path& path) {
  auto name = fmt::format("{}.tmp-{}-{}", path.filename().string(), ::getpid(), g_counter++);
  return path.parent_path() / name;
}

void commit(const std::filesystem::path& tmp, const std::filesystem::path& path) {
  fsync_path(tmp);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    throw Error(
        fmt::format("cannot rename {} to {}: {}", tmp.string(), path.string(), ec.message()));
  }
  if (path.has_parent_path()) fsync_path(path.parent_path());
}

void write_atomic(const std::filesystem::path& path, const std::string& content) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  auto tmp = temp_sibling(path);
  FileWriter out(tmp);
  out.write(content.data(), content.size());
  out.finish();
  commit(tmp, path);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot read {}: {}", path.string(), std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string checksum_bytes(const void* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  while (size > 0) {
    uInt n = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = crc32(crc, p, n);
    p += n;
    size -= n;
  }
  return fmt::format("crc32:{:08x}", static_cast<uint32_t>(crc));
}

std::string checksum_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot read {}: {}", path.string(), std::strerror(errno)));
  uLong crc = crc32(0L, Z_NULL, 0);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    auto n = in.gcount();
    if (n > 0) crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(n));
  }
  return fmt::format("crc32:{:08x}", static_cast<uint32_t>(crc));
}

void refuse_or_overwrite(const std::filesystem::path& dir, const EarlierOutput& e, bool overwrite) {
  if (!overwrite)
    throw Error(
        fmt::format("{}: {} already holds {}{}; {}start over in a new {} or with --overwrite ({})",
                    e.verb, dir.string(), e.what,
                    e.found.empty() ? "" : " (" + e.found.front().filename().string() + ")",
                    e.resume.empty() ? "" : e.resume + ", or ", e.option, e.overwrite_does));
  for (const auto& p : e.remove) {
    std::filesystem::remove_all(p);
    spdlog::info("{} --overwrite: removed {}", e.verb, p.string());
  }
}

bool write_all(int fd, const void* data, size_t n) noexcept {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

void close_descriptors_except(int keep) noexcept {
  if (keep > 3) ::close_range(3, static_cast<unsigned>(keep) - 1, 0);
  ::close_range(static_cast<unsigned>(std::max(keep + 1, 3)), ~0U, 0);
}

}  // namespace m3ret::fs
