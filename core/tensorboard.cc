#include "core/tensorboard.h"

#include <unistd.h>

#include <chrono>
#include <cstring>

#include <boost/crc.hpp>
#include <fmt/format.h>

#include "core/error.h"

namespace m3ret {

namespace {

// Protocol-buffer wire format: varints, tags, and the three value kinds used.
void varint(std::string& out, uint64_t v) {
  for (; v >= 0x80; v >>= 7) out += static_cast<char>((v & 0x7f) | 0x80);
  out += static_cast<char>(v);
}

void tag(std::string& out, int field, int wire_type) {
  varint(out, static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire_type));
}

template <class T>
void little_endian(std::string& out, T v) {  // x86-64 and aarch64 are little-endian
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

void bytes_field(std::string& out, int field, const std::string& bytes) {
  tag(out, field, 2);
  varint(out, bytes.size());
  out += bytes;
}

std::string event(double wall_time, int64_t step) {
  std::string e;
  tag(e, 1, 1);  // wall_time: double
  little_endian(e, wall_time);
  tag(e, 2, 0);  // step: int64
  varint(e, static_cast<uint64_t>(step));
  return e;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(data, size);
  return crc.checksum();
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

EventWriter::EventWriter(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "localhost");
  path_ = dir / fmt::format("events.out.tfevents.{}.{}.{}", static_cast<int64_t>(now_s()), host,
                            getpid());
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_) throw Error(fmt::format("cannot write {}", path_.string()));
  std::string e = event(now_s(), 0);
  bytes_field(e, 3, "brain.Event:2");  // file_version
  record(e);
}

void EventWriter::scalars(int64_t step, double wall_time,
                          const std::vector<std::pair<std::string, double>>& values) {
  std::string summary;
  for (const auto& [name, v] : values) {
    std::string value;
    bytes_field(value, 1, name);  // tag
    tag(value, 2, 5);             // simple_value: float
    little_endian(value, static_cast<float>(v));
    bytes_field(summary, 1, value);
  }
  std::string e = event(wall_time, step);
  bytes_field(e, 5, summary);
  record(e);
}

void EventWriter::record(const std::string& data) {
  std::string r;
  const uint64_t length = data.size();
  little_endian(r, length);
  little_endian(r, masked_crc32c(r.data(), sizeof(length)));
  r += data;
  little_endian(r, masked_crc32c(data.data(), data.size()));
  out_.write(r.data(), static_cast<std::streamsize>(r.size()));
  out_.flush();
  if (!out_) throw Error(fmt::format("cannot write {}", path_.string()));
}

}  // namespace m3ret
