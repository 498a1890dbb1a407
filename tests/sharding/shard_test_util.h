// Helpers for the sharding tests: deterministic samples and shard folders.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/sample.h"
#include "sharding/shard_index.h"
#include "sharding/shard_writer.h"

namespace m3ret::testing {

// A sample whose pixels are a function of (seed, position).
inline data::Sample make_sample(const std::string& modality, int64_t i, int64_t C, int64_t T,
                                int64_t H, int64_t W) {
  data::Sample s;
  s.C = C;
  s.T = T;
  s.H = H;
  s.W = W;
  s.pixels.resize(static_cast<size_t>(s.numel()));
  for (size_t p = 0; p < s.pixels.size(); ++p) {
    // Smooth ramps (compressible) plus a sample-specific offset.
    s.pixels[p] = static_cast<uint8_t>((p / 3 + 7 * i + (p % W == 0 ? 100 : 0)) & 0xff);
  }
  s.id = modality + "/sample-" + std::to_string(i);
  s.modality = modality;
  if (i % 3 == 0) s.labels = {"nodule"};
  if (i % 3 == 1) s.labels = {"cyst", "mass"};
  s.group = "patient-" + std::to_string(i / 2);
  s.split = i % 4 == 3 ? "test" : "train";
  s.source = "/data/" + modality + "/" + std::to_string(i) + ".png";
  return s;
}

// Writes `samples` (one modality) into dir/<modality>/shard-0000k.h5 in
// shards of `per_shard`, returns the index entries.
inline std::vector<sharding::ShardEntry> write_shards(const std::filesystem::path& dir,
                                                      const std::vector<data::Sample>& samples,
                                                      size_t per_shard, int compression) {
  std::vector<sharding::ShardEntry> entries;
  for (size_t b = 0, k = 0; b < samples.size(); b += per_shard, ++k) {
    std::string file = samples[b].modality + "/shard-0000" + std::to_string(k) + ".h5";
    sharding::ShardWriter w(dir / file, {samples[b].modality, compression, int64_t(b), 0, "test"});
    for (size_t i = b; i < std::min(samples.size(), b + per_shard); ++i) w.append(samples[i]);
    w.commit();
    entries.push_back(sharding::describe_shard(dir, file));
  }
  return entries;
}

}  // namespace m3ret::testing
