// Writes one shard file (format: sharding/shard_format.h, docs/formats.md).
//
// Samples are appended one at a time (constant memory: only the metadata
// strings are kept until commit). The file is written under a temporary
// sibling name and renamed to its final name by commit(); a writer destroyed
// without commit() removes its temporary file, so no partial shard is ever
// visible under the final name.
//
// Thread safety: one ShardWriter is used by one thread; several writers may
// run in one process (HDF5 calls take the global HDF5 lock). encode() is pure
// and may run on any thread concurrently.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/sample.h"
#include "sharding/shard_format.h"

namespace m3ret::sharding {

// A sample with its pixels already compressed into the stored chunk
// (compression happens outside the HDF5 lock, e.g. on decoding threads).
struct EncodedSample {
  SampleMeta meta;
  std::string modality;
  int64_t C = 0, T = 0, H = 0, W = 0;
  std::vector<uint8_t> chunk;  // zlib stream of the C*T*H*W pixel bytes, or raw if level 0
};

struct ShardHeader {
  std::string modality;
  int compression = 4;    // deflate level 0..9 (0 = store raw)
  int64_t first_row = 0;  // see shard_format.h
  int64_t rows = 0;       // manifest rows covered; 0 = "count of samples + rejects"
  std::string key;        // input fingerprint (free text)
  // The clip a read returns (attribute `clip`): clip_frames frames at
  // clip_stride out of the stored T; 0 = all T frames (stride 1).
  int64_t clip_frames = 0;
  int64_t clip_stride = 1;
};

class ShardWriter {
 public:
  // Creates the temporary file next to `path` (parent folder created).
  // Throws m3ret::Error naming the path on failure or a bad header.
  ShardWriter(std::filesystem::path path, ShardHeader header);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Compresses a sample's pixels at `compression` (0..9). Pure; thread-safe.
  // Throws m3ret::Error if pixels.size() != C*T*H*W or a dimension is < 1.
  static EncodedSample encode(const data::Sample& sample, int compression);

  // Appends a sample. All samples must have the writer's modality, the same
  // shape, be encoded at the writer's compression level and hold enough
  // frames for the header's clip (throws otherwise).
  void append(const data::Sample& sample);
  void append(EncodedSample&& sample);
  // Records an input refused for this shard (stored in the file).
  void add_reject(const std::string& source, const std::string& reason);

  // Writes the metadata, closes the file and renames it to its final name.
  void commit();

  int64_t count() const { return static_cast<int64_t>(metas_.size()); }
  const std::filesystem::path& path() const { return path_; }

 private:
  void create_pixels(int64_t C, int64_t T, int64_t H, int64_t W);
  void close_and_remove();

  std::filesystem::path path_, tmp_;
  ShardHeader header_;
  int64_t file_ = -1, pixels_ = -1;  // hid_t
  int64_t C_ = 0, T_ = 0, H_ = 0, W_ = 0;
  std::vector<SampleMeta> metas_;
  std::vector<uint32_t> crcs_;  // chunk_crc of each stored chunk (pixel_crc)
  std::vector<std::string> rejected_sources_, rejected_reasons_;
  bool committed_ = false;
};

}  // namespace m3ret::sharding
