// DistributedSampler: disjoint ranks, same modality on every rank, N ranks x b
// == 1 rank x N*b, exact resume, epoch coverage, mixing proportions.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/error.h"
#include "sharding/sampler.h"

namespace m3ret::sharding {
namespace {

std::map<std::string, std::vector<int64_t>> pools() {
  std::map<std::string, std::vector<int64_t>> p;
  for (int64_t i = 0; i < 600; ++i) p["xray"].push_back(i);
  for (int64_t i = 0; i < 200; ++i) p["ct"].push_back(1000 + i);
  for (int64_t i = 0; i < 5; ++i) p["mri"].push_back(i * 2);  // smaller than a global batch
  p["other"] = {};                                            // ignored
  return p;
}

TEST(Sampler, RanksTakeDisjointSlicesOfTheSameModality) {
  const int world = 3;
  std::vector<DistributedSampler> ranks;
  for (int r = 0; r < world; ++r) ranks.emplace_back(pools(), 4, r, world, 7);
  for (int step = 0; step < 200; ++step) {
    std::set<int64_t> seen;
    std::string modality;
    for (int r = 0; r < world; ++r) {
      auto b = ranks[r].next();
      EXPECT_EQ(b.step, step);
      EXPECT_EQ(b.indices.size(), 4u);
      if (r == 0) modality = b.modality;
      EXPECT_EQ(b.modality, modality) << "step " << step;
      if (b.modality != "mri") {  // mri (5 samples) cannot fill a global batch of 12
        for (auto i : b.indices) EXPECT_TRUE(seen.insert(i).second) << "step " << step;
      }
    }
  }
}

TEST(Sampler, TwoRanksEqualOneRankWithDoubleBatch) {
  DistributedSampler one(pools(), 8, 0, 1, 11);
  DistributedSampler r0(pools(), 4, 0, 2, 11), r1(pools(), 4, 1, 2, 11);
  for (int step = 0; step < 300; ++step) {
    auto a = one.next(), b0 = r0.next(), b1 = r1.next();
    EXPECT_EQ(a.modality, b0.modality);
    std::vector<int64_t> cat = b0.indices;
    cat.insert(cat.end(), b1.indices.begin(), b1.indices.end());
    ASSERT_EQ(cat, a.indices) << "step " << step;
  }
}

TEST(Sampler, ResumeGivesTheUninterruptedSequence) {
  DistributedSampler full(pools(), 6, 1, 2, 3);
  std::vector<DistributedSampler::Batch> ref;
  for (int s = 0; s < 250; ++s) ref.push_back(full.next());
  for (int64_t at : {0, 1, 57, 133, 249}) {
    DistributedSampler resumed(pools(), 6, 1, 2, 3);
    resumed.set_position(at);
    EXPECT_EQ(resumed.position(), at);
    for (int64_t s = at; s < 250; ++s) {
      auto b = resumed.next();
      ASSERT_EQ(b.step, s);
      ASSERT_EQ(b.modality, ref[s].modality);
      ASSERT_EQ(b.indices, ref[s].indices) << "resumed at " << at << ", step " << s;
    }
  }
  // Going backwards works too.
  full.set_position(10);
  EXPECT_EQ(full.next().indices, ref[10].indices);
}

TEST(Sampler, EachEpochVisitsEverySampleOnceAndReshuffles) {
  std::map<std::string, std::vector<int64_t>> p;
  for (int64_t i = 0; i < 50; ++i) p["xray"].push_back(i);
  const int world = 2;
  const int64_t b = 5;  // global batch 10: 5 batches per epoch
  std::vector<DistributedSampler> ranks;
  for (int r = 0; r < world; ++r) ranks.emplace_back(p, b, r, world, 5);
  std::vector<std::vector<int64_t>> epochs(2);
  for (int step = 0; step < 10; ++step) {
    for (int r = 0; r < world; ++r) {
      auto batch = ranks[r].next();
      EXPECT_EQ(batch.epoch, step / 5);
      epochs[step / 5].insert(epochs[step / 5].end(), batch.indices.begin(), batch.indices.end());
    }
  }
  for (auto& e : epochs) {
    std::set<int64_t> s(e.begin(), e.end());
    EXPECT_EQ(s.size(), 50u);
  }
  EXPECT_NE(epochs[0], epochs[1]);  // a new permutation per epoch
  // Another seed, another order.
  DistributedSampler other(p, 10, 0, 1, 6);
  EXPECT_NE(other.next().indices, std::vector<int64_t>(epochs[0].begin(), epochs[0].begin() + 10));
}

std::map<std::string, double> frequencies(const MixingConfig& mixing, int steps) {
  DistributedSampler s(pools(), 1, 0, 1, 99, mixing);
  std::map<std::string, double> f;
  for (int i = 0; i < steps; ++i) f[s.next().modality] += 1.0 / steps;
  return f;
}

TEST(Sampler, MixingProportionsFollowTheWeights) {
  const int steps = 20000;
  auto prop = frequencies({"proportional", 1.0}, steps);
  EXPECT_NEAR(prop["xray"], 600.0 / 805, 0.02);
  EXPECT_NEAR(prop["ct"], 200.0 / 805, 0.02);
  EXPECT_NEAR(prop["mri"], 5.0 / 805, 0.005);
  EXPECT_EQ(prop.count("other"), 0u);
  auto uni = frequencies({"uniform", 1.0}, steps);
  for (const char* m : {"xray", "ct", "mri"}) EXPECT_NEAR(uni[m], 1.0 / 3, 0.02) << m;
  auto temp = frequencies({"temperature", 2.0}, steps);
  double z = std::sqrt(600.0) + std::sqrt(200.0) + std::sqrt(5.0);
  EXPECT_NEAR(temp["xray"], std::sqrt(600.0) / z, 0.02);
  EXPECT_NEAR(temp["mri"], std::sqrt(5.0) / z, 0.02);
  auto w = mixing_weights({{"a", 1}, {"b", 3}}, {"proportional", 1.0});
  EXPECT_DOUBLE_EQ(w["b"], 0.75);
  EXPECT_THROW(mixing_weights({{"a", 1}}, {"zipf", 1.0}), Error);
}

TEST(Sampler, RefusesBadArguments) {
  EXPECT_THROW(DistributedSampler(pools(), 0, 0, 1, 1), Error);
  EXPECT_THROW(DistributedSampler(pools(), 2, 2, 2, 1), Error);
  EXPECT_THROW(DistributedSampler({{"ct", {}}}, 2, 0, 1, 1), Error);
}

}  // namespace
}  // namespace m3ret::sharding
