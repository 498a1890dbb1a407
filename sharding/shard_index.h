// SHARDS/index.json ("m3ret-shards", version 2; docs/formats.md): what the
// sharder writes after all ranks finished, and ShardSet::open reads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace m3ret::sharding {

// One shard as listed in index.json, plus what the index gathers from it.
struct ShardEntry {
  std::string file;  // relative to the shard folder, e.g. "ct/shard-00000.h5"
  std::string modality;
  int64_t shard = 0;  // k in shard-0000k.h5
  int64_t count = 0;  // samples
  int64_t rows = 0;   // manifest rows covered
  int64_t first_row = 0;
  std::vector<int64_t> shape;       // C, T, H, W as stored ([0,0,0,0] when count == 0)
  std::vector<int64_t> clip;        // frames, stride of a read (attribute `clip`)
  std::string checksum;             // fs::checksum_file
  std::vector<std::string> labels;  // distinct labels in the shard, sorted
  std::vector<std::string> rejected_sources, rejected_reasons;
};
void to_json(nlohmann::json& j, const ShardEntry& e);
void from_json(const nlohmann::json& j, ShardEntry& e);

// Reads a committed shard's metadata and checksum. `file` is relative to `dir`.
// Throws m3ret::Error naming the file. For shards this process wrote, or read
// first with read_shard_metadata (shard_format.h): it reads without a child.
ShardEntry describe_shard(const std::filesystem::path& dir, const std::string& file);

// Builds the index document from the entries (any order: sorted here by
// modality order, then shard number). Throws m3ret::Error when the shapes or
// clips of one modality differ. `extra` keys (manifest, preprocess, shard config) are
// copied into the document.
nlohmann::json build_index(std::vector<ShardEntry> entries, const nlohmann::json& extra);

// Writes dir/index.json atomically.
void write_index(const std::filesystem::path& dir, const nlohmann::json& index);

}  // namespace m3ret::sharding
