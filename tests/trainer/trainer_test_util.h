// Helpers shared by the trainer tests: a tiny model and a small mixed dataset.
#pragma once

#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "sharding/shard_test_util.h"
#include "trainer/settings.h"

namespace m3ret::testing {

// A ViT of width 32 with 2x8x8 tubelets and small MAE/SimDINO heads
// (`depth` blocks, `local_crops` SimDINO local views).
inline trainer::Settings tiny_settings(const std::string& objective, int64_t depth = 2,
                                       int64_t local_crops = 2) {
  trainer::Settings s;
  s.model.preset = "tiny";
  s.model.width = 32;
  s.model.depth = depth;
  s.model.heads = 2;
  s.model.tubelet = {2, 8, 8};
  s.train.objective = objective;
  s.mae.decoder_width = 16;
  s.mae.decoder_depth = 1;
  s.mae.decoder_heads = 2;
  s.simdino.head_hidden = 32;
  s.simdino.head_out = 16;
  s.simdino.local_crops = local_crops;
  return s;
}

// Shards of 16 grayscale 16x16 images ("xray") and 16 RGB 4-frame 16x16 clips
// ("endoscopy"), 8 per shard, with their index.json.
inline void write_mixed_dataset(const std::filesystem::path& dir) {
  std::vector<sharding::ShardEntry> entries;
  for (auto [m, C, T] : {std::tuple<const char*, int64_t, int64_t>{"xray", 1, 1}, {"endoscopy", 3, 4}}) {
    std::vector<data::Sample> samples;
    for (int64_t i = 0; i < 16; ++i) samples.push_back(make_sample(m, i, C, T, 16, 16));
    auto e = write_shards(dir, samples, 8, 1);
    entries.insert(entries.end(), e.begin(), e.end());
  }
  sharding::write_index(dir, sharding::build_index(entries, {{"manifest", "test"}}));
}

}  // namespace m3ret::testing
