// The shard file format ("m3ret-shard", version 5; docs/formats.md).
//
// One HDF5 file per shard, one modality and one sample shape per file:
//   attributes (on the root group)
//     format          string  "m3ret-shard"
//     format_version  int64   5 (older versions are refused, naming the file
//                             and the command that rewrites it)
//     modality        string  the sample group: one of data::group_names() (a
//                             modality, or endoscopy-image for endoscopy stills)
//     shape           int64[4] C, T, H, W of every sample as stored ([0,0,0,0]
//                             when N = 0); for videos T = the stored frames
//     clip            int64[2] frames and stride of the clip a read returns
//                             (frames = T, stride 1 for non-video samples)
//     compression     int64   deflate level of `pixels` (0 = none)
//     first_row       int64   index (0-based, within the modality) of the first
//                             manifest row this shard covers
//     rows            int64   manifest rows covered (N + rejected)
//     key             string  fingerprint of the inputs (rows + preprocessing);
//                             the sharder skips a shard whose key matches
//   datasets
//     pixels   uint8 [N, C, T, H, W], chunk [1, C, T, H, W] (one chunk per
//              sample), deflate filter when compression > 0
//     pixel_crc uint32 [N], the CRC-32 (zlib) of each sample's chunk as stored
//              (after deflate): verified by every read and by a resuming sharder
//     ids, labels, groups, splits, sources, datasets  UTF-8 vlen strings [N]
//              (labels of a sample joined by '|')
//     rejected_sources, rejected_reasons            UTF-8 vlen strings [R]
// No times are recorded: the same content gives byte-identical files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "sharding/shard_set.h"

#include "data/sample.h"

namespace m3ret::sharding {

inline constexpr const char* kShardFormat = "m3ret-shard";
inline constexpr int64_t kShardFormatVersion = 5;
// SHARDS/index.json (docs/formats.md).
inline constexpr const char* kIndexFormat = "m3ret-shards";
inline constexpr int64_t kIndexFormatVersion = 3;
// What an older shard file or index.json is refused with: names the file and
// the command that rewrites the shards.
std::string outdated_shards_message(const std::filesystem::path& file, int64_t version,
                                    int64_t current);

// Everything in a shard file except the pixels.
struct ShardMetadata {
  std::string modality;                      // the sample group (data::group_names())
  int64_t C = 0, T = 0, H = 0, W = 0;        // as stored
  int64_t clip_frames = 0, clip_stride = 1;  // attr `clip` (0, 1 when N = 0)
  int64_t count = 0;                         // N
  int64_t compression = 0;
  int64_t first_row = 0;
  int64_t rows = 0;
  std::string key;
  std::vector<SampleMeta> samples;                              // [N]
  std::vector<uint32_t> pixel_crc;                              // [N] CRC-32 of each stored chunk
  std::vector<std::string> rejected_sources, rejected_reasons;  // [R]
};

// Reads and validates the metadata of a shard (format, version, consistent
// dataset sizes). Throws m3ret::Error naming the file on any problem. The file
// is first read in a forked child with time and memory limits (ShardReadLimits,
// shard_set.h): a file on which libhdf5 crashes, loops or runs out of memory is
// an error naming it. Thread-safe (takes the HDF5 lock).
ShardMetadata read_shard_metadata(const std::filesystem::path& path,
                                  const ShardReadLimits& limits = {});

// The check read_shard_metadata makes in a child, for the shards of folder `dir` at
// once (one child; ShardSet::open): within base_timeout_s plus 1 s per 10 files and
// 4096 MB plus four times the largest file. Throws m3ret::Error naming the first file
// that fails (a child that died is followed by one child per file to find it).
void check_shards(const std::filesystem::path& dir, const std::vector<std::filesystem::path>& paths,
                  const ShardReadLimits& limits = {});
// read_shard_metadata without the child, for files check_shards accepted.
ShardMetadata read_checked_shard_metadata(const std::filesystem::path& path);

// CRC-32 (zlib) of a stored chunk, as recorded in `pixel_crc`.
uint32_t chunk_crc(const uint8_t* data, size_t size);

// Reads every stored pixel chunk of the shard at `path` (no inflating) and
// checks it against md.pixel_crc. Throws m3ret::Error naming the file and the
// first sample that differs. Thread-safe (takes the HDF5 lock).
void verify_shard_pixels(const std::filesystem::path& path, const ShardMetadata& md);

// Labels are '|'-joined, as everywhere (data/sample.h).
using data::join_labels;
using data::split_labels;

}  // namespace m3ret::sharding
