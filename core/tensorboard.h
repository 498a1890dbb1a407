// TensorBoard event files (what TensorBoard's own writers produce), written
// without TensorFlow or protobuf: TFRecord framing (uint64 length, masked
// CRC-32C of the length, the bytes, masked CRC-32C of the bytes) around
// serialized `Event` messages. Only the fields that scalars need are encoded:
// Event{wall_time = 1, step = 2, file_version = 3, summary = 5},
// Summary{value = 1}, Summary.Value{tag = 1, simple_value = 2}.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace m3ret {

// CRC-32C (Castagnoli) of the bytes, and TFRecord's masked form of it.
uint32_t crc32c(const void* data, size_t size);
uint32_t masked_crc32c(const void* data, size_t size);

class EventWriter {
 public:
  // Creates dir and dir/events.out.tfevents.<unix seconds>.<host>.<pid>, and
  // writes the version event. Throws m3ret::Error naming the file.
  explicit EventWriter(const std::filesystem::path& dir);
  // One event of `step` with a scalar per (tag, value); flushed at once.
  // Throws m3ret::Error naming the file when it cannot be written.
  void scalars(int64_t step, double wall_time,
               const std::vector<std::pair<std::string, double>>& values);
  const std::filesystem::path& path() const { return path_; }

 private:
  void record(const std::string& event);
  std::filesystem::path path_;
  std::ofstream out_;
};

}  // namespace m3ret
