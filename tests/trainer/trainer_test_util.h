// Helpers shared by the trainer tests: a tiny model (tests/model/model_test_util.h)
// and a small mixed dataset.
#pragma once

#include <filesystem>
#include <tuple>
#include <vector>

#include "model/model_test_util.h"
#include "sharding/shard_test_util.h"

namespace m3ret::testing {

// Shards of 16 grayscale 16x16 images ("xray") and 16 RGB 4-frame 16x16 clips
// ("endoscopy"), 8 per shard, with their index.json.
inline void write_mixed_dataset(const std::filesystem::path& dir) {
  std::vector<sharding::ShardEntry> entries;
  for (auto [m, C, T] :
       {std::tuple<const char*, int64_t, int64_t>{"xray", 1, 1}, {"endoscopy", 3, 4}}) {
    std::vector<data::Sample> samples;
    for (int64_t i = 0; i < 16; ++i) samples.push_back(make_sample(m, i, C, T, 16, 16));
    auto e = write_shards(dir, samples, 8, 1);
    entries.insert(entries.end(), e.begin(), e.end());
  }
  sharding::write_index(dir, sharding::build_index(entries, {{"manifest", "test"}}));
}

}  // namespace m3ret::testing
