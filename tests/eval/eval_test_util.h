// Builders for hand-made embedding sets (tests only).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/embeddings_file.h"

namespace m3ret::eval::testing {

// Appends one sample. vec.size() must equal set.D (set D before the first add).
void add(EmbeddingSet& set, const std::string& modality, const std::string& group,
         const std::vector<std::string>& labels, const std::vector<float>& vec,
         const std::string& split = "test");

// A random set: `n` samples over `modalities`, `groups` patients, labels drawn
// from {l0..l<nlabels-1>} (0 to 2 per sample), dimension D, fixed seed.
EmbeddingSet random_set(int64_t n, int64_t D, const std::vector<std::string>& modalities,
                        int groups, int nlabels, uint32_t seed);

// The message of the m3ret::Error that f() throws ("" if none).
std::string error_of(const std::function<void()>& f);

}  // namespace m3ret::eval::testing
