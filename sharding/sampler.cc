#include "sharding/sampler.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include <fmt/format.h>

#include "core/config.h"
#include "core/error.h"
#include "data/sample.h"

namespace m3ret::sharding {

namespace {

// SplitMix64 finaliser: mixes seeds for independent PRNG streams.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t hash_string(const std::string& s) {  // FNV-1a: stable across builds
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Uniform integer in [0, n) without modulo bias (portable, unlike
// std::uniform_int_distribution whose algorithm the standard leaves open).
uint64_t below(std::mt19937_64& rng, uint64_t n) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = rng();
  while (x >= limit);
  return x % n;
}

double unit(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

}  // namespace

int64_t clip_start(uint64_t seed, int64_t step, int64_t global_index, int64_t starts) {
  M3RET_CHECK(starts >= 1, "clip_start: {} starts", starts);
  constexpr uint64_t kClipStream = 0x636c6970;  // "clip"
  std::mt19937_64 rng(mix(mix(mix(seed ^ kClipStream) ^ static_cast<uint64_t>(step)) ^
                          static_cast<uint64_t>(global_index)));
  return static_cast<int64_t>(below(rng, static_cast<uint64_t>(starts)));
}

std::map<std::string, double> mixing_weights(const std::map<std::string, int64_t>& sizes,
                                             const MixingConfig& mixing) {
  if (mixing.mode == "temperature" && !(mixing.temperature > 0)) {
    throw Error(fmt::format("loader.temperature must be > 0 (got {})", mixing.temperature));
  }
  std::map<std::string, double> w;
  double total = 0;
  for (const auto& [m, n] : sizes) {
    if (n <= 0) continue;
    double x;
    if (mixing.mode == "proportional") {
      x = static_cast<double>(n);
    } else if (mixing.mode == "uniform") {
      x = 1.0;
    } else if (mixing.mode == "temperature") {
      x = std::pow(static_cast<double>(n), 1.0 / mixing.temperature);
    } else {
      throw Error(
          fmt::format("loader.mixing: unknown mode '{}' (proportional, uniform, "
                      "temperature)",
                      mixing.mode));
    }
    w[m] = x;
    total += x;
  }
  for (auto& [m, x] : w) x /= total;
  return w;
}

std::map<std::string, double> group_weights(const std::map<std::string, int64_t>& group_sizes,
                                            const MixingConfig& mixing) {
  std::map<std::string, int64_t> modality_sizes;
  for (const auto& [g, n] : group_sizes) {
    if (n > 0) modality_sizes[data::group_modality(g)] += n;
  }
  const auto modality_weights = mixing_weights(modality_sizes, mixing);
  std::map<std::string, double> w;
  for (const auto& [g, n] : group_sizes) {
    if (n <= 0) continue;
    const std::string m = data::group_modality(g);
    const int64_t total = modality_sizes.at(m);
    // A modality's only group keeps the modality's weight exactly.
    w[g] = n == total ? modality_weights.at(m) : modality_weights.at(m) * (double(n) / total);
  }
  return w;
}

namespace {

// 'a', 'b', '' (a row without a dataset has the dataset '').
std::string quoted(const std::set<std::string>& names) {
  return names.empty() ? "none" : fmt::format("'{}'", fmt::join(names, "', '"));
}

// Dataset weights by name (unlisted: 1), after checking every listed name
// against the datasets present.
std::map<std::string, double> dataset_weight_map(const std::set<std::string>& present,
                                                 const MixingConfig& mixing) {
  validate_dataset_weights(mixing.datasets, mixing.dataset_weights);
  std::map<std::string, double> w;
  for (size_t i = 0; i < mixing.datasets.size(); ++i) {
    const std::string& d = mixing.datasets[i];
    if (!present.count(d)) {
      throw config::Error(fmt::format(
          "config key 'loader.datasets': dataset '{}' is not among the training samples' "
          "datasets (present: {})",
          d, quoted(present)));
    }
    w[d] = mixing.dataset_weights[i];
  }
  for (const auto& d : present) w.emplace(d, 1.0);
  return w;
}

}  // namespace

void validate_dataset_weights(const std::vector<std::string>& datasets,
                              const std::vector<double>& weights) {
  if (datasets.size() != weights.size()) {
    throw config::Error(fmt::format(
        "config keys 'loader.datasets' ({} names) and 'loader.dataset_weights' ({} weights) "
        "must have the same length",
        datasets.size(), weights.size()));
  }
  const std::set<std::string> names(datasets.begin(), datasets.end());
  if (names.size() != datasets.size()) {
    throw config::Error(fmt::format("config key 'loader.datasets' lists a dataset twice: [{}]",
                                    fmt::join(datasets, ", ")));
  }
  for (size_t i = 0; i < weights.size(); ++i) {
    if (!(weights[i] >= 0)) {
      throw config::Error(
          fmt::format("config key 'loader.dataset_weights': weight {} of '{}' is below 0",
                      weights[i], datasets[i]));
    }
  }
  if (!weights.empty() &&
      std::all_of(weights.begin(), weights.end(), [](double w) { return w == 0; })) {
    throw config::Error(
        "config key 'loader.dataset_weights': every weight is 0 (at least one must be > 0)");
  }
}

std::map<std::pair<std::string, std::string>, double> dataset_pool_weights(
    const std::map<std::string, std::map<std::string, int64_t>>& counts,
    const MixingConfig& mixing) {
  std::set<std::string> present;
  // Per modality: samples of each dataset over its groups.
  std::map<std::string, std::map<std::string, int64_t>> per_modality;
  for (const auto& [g, by_dataset] : counts) {
    for (const auto& [d, n] : by_dataset) {
      if (n <= 0) continue;
      present.insert(d);
      per_modality[data::group_modality(g)][d] += n;
    }
  }
  const auto wd = dataset_weight_map(present, mixing);
  std::map<std::string, int64_t> modality_sizes;
  for (const auto& [m, by_dataset] : per_modality)
    for (const auto& [d, n] : by_dataset) modality_sizes[m] += n;
  const auto modality_weights = mixing_weights(modality_sizes, mixing);
  std::map<std::pair<std::string, std::string>, double> w;
  double total = 0;
  for (const auto& [g, by_dataset] : counts) {
    const std::string m = data::group_modality(g);
    double sum = 0;  // the modality's dataset weights
    for (const auto& [d, n] : per_modality[m]) sum += wd.at(d);
    for (const auto& [d, n] : by_dataset) {
      if (n <= 0 || sum <= 0 || wd.at(d) <= 0) continue;
      const double x =
          modality_weights.at(m) * (wd.at(d) / sum) * (double(n) / double(per_modality[m].at(d)));
      w[{g, d}] = x;
      total += x;
    }
  }
  // Every listed dataset is present and unlisted ones weigh 1, so a positive weight is drawn.
  M3RET_CHECK(total > 0, "dataset_pool_weights: total weight {}", total);
  for (auto& [k, x] : w) x /= total;
  return w;
}

DistributedSampler::DistributedSampler(
    std::map<std::string, std::vector<int64_t>> pool, int64_t per_rank_batch, int rank, int world,
    uint64_t seed, MixingConfig mixing,
    const std::map<std::string, std::vector<std::string>>& datasets)
    : batch_(per_rank_batch), rank_(rank), world_(world), seed_(seed) {
  if (per_rank_batch < 1) {
    throw Error(fmt::format("sampler: per-rank batch size must be >= 1 (got {})", per_rank_batch));
  }
  if (world < 1 || rank < 0 || rank >= world) {
    throw Error(fmt::format("sampler: rank {} is not in [0, {})", rank, world));
  }
  if (mixing.datasets.empty() && mixing.dataset_weights.empty()) {
    build_group_pools(std::move(pool), mixing);
  } else {
    build_dataset_pools(pool, datasets, mixing);
  }
  double c = 0;
  for (const auto& p : pools_) {
    c += p.weight;
    cumulative_.push_back(c);
    weights_[p.group] += p.weight;
  }
  cumulative_.back() = 1.0;
}

void DistributedSampler::build_group_pools(std::map<std::string, std::vector<int64_t>> pool,
                                           const MixingConfig& mixing) {
  std::map<std::string, int64_t> sizes;
  for (auto& [g, v] : pool) {
    if (v.empty()) continue;
    sizes[g] = static_cast<int64_t>(v.size());
    Pool p;
    p.group = g;
    p.stream = hash_string(g);
    p.indices = std::move(v);
    pools_.push_back(std::move(p));
  }
  if (pools_.empty()) throw Error("sampler: every modality's pool of samples is empty");
  const auto w = group_weights(sizes, mixing);
  for (auto& p : pools_) p.weight = w.at(p.group);
}

void DistributedSampler::build_dataset_pools(
    const std::map<std::string, std::vector<int64_t>>& pool,
    const std::map<std::string, std::vector<std::string>>& datasets, const MixingConfig& mixing) {
  std::map<std::pair<std::string, std::string>, std::vector<int64_t>> split;
  std::map<std::string, std::map<std::string, int64_t>> counts;
  for (const auto& [g, v] : pool) {
    if (v.empty()) continue;
    auto it = datasets.find(g);
    if (it == datasets.end() || it->second.size() != v.size()) {
      throw Error(fmt::format(
          "sampler: dataset weights need the dataset of every sample of '{}' ({} samples, {} "
          "datasets given)",
          g, v.size(), it == datasets.end() ? 0 : it->second.size()));
    }
    for (size_t i = 0; i < v.size(); ++i) {
      split[{g, it->second[i]}].push_back(v[i]);
      ++counts[g][it->second[i]];
    }
  }
  if (split.empty()) throw Error("sampler: every modality's pool of samples is empty");
  const auto w = dataset_pool_weights(counts, mixing);
  for (auto& [key, v] : split) {
    auto wit = w.find(key);
    if (wit == w.end()) continue;  // weight 0: never drawn
    Pool p;
    p.group = key.first;
    p.dataset = key.second;
    p.stream = hash_string(key.first + "/" + key.second);
    p.indices = std::move(v);
    p.weight = wit->second;
    pools_.push_back(std::move(p));
  }
}

std::map<std::pair<std::string, std::string>, double> DistributedSampler::pool_weights() const {
  std::map<std::pair<std::string, std::string>, double> w;
  for (const auto& p : pools_) w[{p.group, p.dataset}] = p.weight;
  return w;
}

size_t DistributedSampler::pool_at(int64_t step) const {
  double u = unit(mix(mix(seed_) ^ static_cast<uint64_t>(step)));
  for (size_t i = 0; i < pools_.size(); ++i) {
    if (u < cumulative_[i]) return i;
  }
  return pools_.size() - 1;
}

void DistributedSampler::set_position(int64_t step) {
  if (step < 0) throw Error(fmt::format("sampler: negative position {}", step));
  for (auto& p : pools_) p.drawn = 0;
  for (int64_t s = 0; s < step; ++s) ++pools_[pool_at(s)].drawn;
  step_ = step;
}

int64_t DistributedSampler::element(Pool& p, int64_t epoch, int64_t offset) {
  if (p.perm.empty() || p.perm_epoch != epoch) {
    p.perm = p.indices;
    std::mt19937_64 rng(mix(mix(seed_ ^ p.stream) + static_cast<uint64_t>(epoch)));
    for (size_t i = p.perm.size(); i > 1; --i) {  // Fisher-Yates
      std::swap(p.perm[i - 1], p.perm[below(rng, i)]);
    }
    p.perm_epoch = epoch;
  }
  return p.perm[static_cast<size_t>(offset)];
}

DistributedSampler::Batch DistributedSampler::next() {
  Pool& p = pools_[pool_at(step_)];
  Batch b;
  b.step = step_;
  b.modality = p.group;
  b.dataset = p.dataset;
  const int64_t k = p.drawn++;
  const int64_t n = static_cast<int64_t>(p.indices.size());
  const int64_t G = global_batch();
  // Stream position of this rank's first sample.
  int64_t epoch, offset;
  if (n >= G) {
    const int64_t per_epoch = n / G;
    epoch = k / per_epoch;
    offset = (k % per_epoch) * G + rank_ * batch_;
  } else {
    int64_t pos = k * G + rank_ * batch_;
    epoch = pos / n;
    offset = pos % n;
  }
  b.epoch = epoch;
  b.indices.reserve(static_cast<size_t>(batch_));
  for (int64_t i = 0; i < batch_; ++i) {
    b.indices.push_back(element(p, epoch, offset));
    if (++offset == n) {
      offset = 0;
      ++epoch;
    }
  }
  ++step_;
  return b;
}

}  // namespace m3ret::sharding
