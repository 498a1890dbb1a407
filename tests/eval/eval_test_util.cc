#include "eval_test_util.h"

#include <random>
#include <stdexcept>

#include "core/error.h"

namespace m3ret::eval::testing {

void add(EmbeddingSet& set, const std::string& modality, const std::string& group,
         const std::vector<std::string>& labels, const std::vector<float>& vec,
         const std::string& split) {
  if (static_cast<int64_t>(vec.size()) != set.D) throw std::runtime_error("add: wrong dimension");
  set.X.insert(set.X.end(), vec.begin(), vec.end());
  set.ids.push_back(modality + "-" + std::to_string(set.N));
  set.modality.push_back(modality);
  set.groups.push_back(group);
  set.splits.push_back(split);
  set.labels.push_back(labels);
  ++set.N;
}

EmbeddingSet random_set(int64_t n, int64_t D, const std::vector<std::string>& modalities,
                        int groups, int nlabels, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  EmbeddingSet set;
  set.D = D;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<float> v(D);
    for (auto& x : v) x = normal(rng);
    std::vector<std::string> labels;
    int count = static_cast<int>(rng() % 3);  // 0, 1 or 2 labels
    for (int c = 0; c < count; ++c) {
      std::string l = "l" + std::to_string(rng() % nlabels);
      if (labels.empty() || labels[0] != l) labels.push_back(l);
    }
    std::string group = rng() % 7 == 0 ? "" : "p" + std::to_string(rng() % groups);
    std::string split = rng() % 4 == 0 ? "train" : "test";
    add(set, modalities[rng() % modalities.size()], group, labels, v, split);
  }
  return set;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace m3ret::eval::testing
