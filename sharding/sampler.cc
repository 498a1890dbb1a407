#include "sharding/sampler.h"

#include <cmath>
#include <random>

#include <fmt/format.h>

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

DistributedSampler::DistributedSampler(std::map<std::string, std::vector<int64_t>> pool,
                                       int64_t per_rank_batch, int rank, int world, uint64_t seed,
                                       MixingConfig mixing)
    : batch_(per_rank_batch), rank_(rank), world_(world), seed_(seed) {
  if (per_rank_batch < 1) {
    throw Error(fmt::format("sampler: per-rank batch size must be >= 1 (got {})", per_rank_batch));
  }
  if (world < 1 || rank < 0 || rank >= world) {
    throw Error(fmt::format("sampler: rank {} is not in [0, {})", rank, world));
  }
  std::map<std::string, int64_t> sizes;
  for (auto& [m, v] : pool) {
    if (v.empty()) continue;
    sizes[m] = static_cast<int64_t>(v.size());
    pool_[m] = std::move(v);
    names_.push_back(m);
    drawn_[m] = 0;
  }
  if (names_.empty()) throw Error("sampler: every modality's pool of samples is empty");
  weights_ = group_weights(sizes, mixing);
  double c = 0;
  for (const auto& m : names_) {
    c += weights_[m];
    cumulative_.push_back(c);
  }
  cumulative_.back() = 1.0;
}

const std::string& DistributedSampler::modality_at(int64_t step) const {
  double u = unit(mix(mix(seed_) ^ static_cast<uint64_t>(step)));
  for (size_t i = 0; i < names_.size(); ++i) {
    if (u < cumulative_[i]) return names_[i];
  }
  return names_.back();
}

void DistributedSampler::set_position(int64_t step) {
  if (step < 0) throw Error(fmt::format("sampler: negative position {}", step));
  for (auto& [m, k] : drawn_) k = 0;
  for (int64_t s = 0; s < step; ++s) ++drawn_[modality_at(s)];
  step_ = step;
}

int64_t DistributedSampler::element(const std::string& m, int64_t epoch, int64_t offset) {
  auto& [cached_epoch, perm] = perm_[m];
  if (perm.empty() || cached_epoch != epoch) {
    perm = pool_.at(m);
    std::mt19937_64 rng(mix(mix(seed_ ^ hash_string(m)) + static_cast<uint64_t>(epoch)));
    for (size_t i = perm.size(); i > 1; --i) {  // Fisher-Yates
      std::swap(perm[i - 1], perm[below(rng, i)]);
    }
    cached_epoch = epoch;
  }
  return perm[static_cast<size_t>(offset)];
}

DistributedSampler::Batch DistributedSampler::next() {
  Batch b;
  b.step = step_;
  b.modality = modality_at(step_);
  const int64_t k = drawn_[b.modality]++;
  const int64_t n = static_cast<int64_t>(pool_.at(b.modality).size());
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
    b.indices.push_back(element(b.modality, epoch, offset));
    if (++offset == n) {
      offset = 0;
      ++epoch;
    }
  }
  ++step_;
  return b;
}

}  // namespace m3ret::sharding
