// DistributedSampler: disjoint ranks, same modality on every rank, N ranks x b
// == 1 rank x N*b, exact resume, epoch coverage, mixing proportions.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <tuple>

#include "core/config.h"
#include "core/error.h"
#include "sharding/loader.h"
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

// Dataset weights: xray holds datasets a (600 samples) and b (200), ct holds c
// (200) and rows without a dataset ("", 100).
struct DatasetPools {
  std::map<std::string, std::vector<int64_t>> pool;
  std::map<std::string, std::vector<std::string>> datasets;
  DatasetPools() {
    for (int64_t i = 0; i < 800; ++i) {
      pool["xray"].push_back(i);
      datasets["xray"].push_back(i % 4 == 3 ? "b" : "a");
    }
    for (int64_t i = 0; i < 300; ++i) {
      pool["ct"].push_back(1000 + i);
      datasets["ct"].push_back(i % 3 == 2 ? "" : "c");
    }
  }
  std::string dataset_of(const std::string& group, int64_t index) const {
    const auto& v = pool.at(group);
    return datasets.at(group)[size_t(std::find(v.begin(), v.end(), index) - v.begin())];
  }
};

// A config root holding [loader], as the trainer's.
struct Root {
  LoaderConfig loader;
  template <class V>
  void visit(V& v) {
    v.section("loader", loader);
  }
};

MixingConfig dataset_mixing(std::vector<std::string> names, std::vector<double> weights) {
  MixingConfig m;
  m.datasets = std::move(names);
  m.dataset_weights = std::move(weights);
  return m;
}

// Over many steps each dataset is drawn at its configured rate: xray (800 of
// 1100 samples, proportional) is shared 1 : 3 by a and b, ct equally by c and
// "" (unlisted: weight 1). Counts stay within 5 binomial standard deviations.
TEST(SamplerDatasets, DrawFrequenciesMatchTheConfiguredWeights) {
  const DatasetPools d;
  DistributedSampler s(d.pool, 4, 0, 1, 5, dataset_mixing({"a", "b"}, {1.0, 3.0}), d.datasets);
  const double x = 800.0 / 1100, c = 300.0 / 1100;
  const std::map<std::pair<std::string, std::string>, double> want = {{{"xray", "a"}, x / 4},
                                                                      {{"xray", "b"}, x * 3 / 4},
                                                                      {{"ct", "c"}, c / 2},
                                                                      {{"ct", ""}, c / 2}};
  const auto got = s.pool_weights();
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [k, p] : want) EXPECT_NEAR(got.at(k), p, 1e-12) << k.first << "/" << k.second;
  EXPECT_NEAR(s.weights().at("xray"), x, 1e-12);
  const int64_t N = 20000;
  std::map<std::pair<std::string, std::string>, int64_t> count;
  for (int64_t step = 0; step < N; ++step) {
    const auto b = s.next();
    ++count[{b.modality, b.dataset}];
    for (int64_t i : b.indices) ASSERT_EQ(d.dataset_of(b.modality, i), b.dataset) << step;
  }
  for (const auto& [k, p] : want) {
    const double sd = std::sqrt(N * p * (1 - p));
    EXPECT_NEAR(double(count[k]), N * p, 5 * sd) << k.first << "/" << k.second;
  }
}

// Every rank draws the same pool at every step; 2 ranks x b are 1 rank x 2b.
TEST(SamplerDatasets, AllRanksDrawTheSameDatasetAndDisjointSamples) {
  const DatasetPools d;
  const auto mixing = dataset_mixing({"c", "a"}, {2.0, 0.5});
  DistributedSampler one(d.pool, 8, 0, 1, 9, mixing, d.datasets);
  DistributedSampler r0(d.pool, 4, 0, 2, 9, mixing, d.datasets);
  DistributedSampler r1(d.pool, 4, 1, 2, 9, mixing, d.datasets);
  r1.set_position(100);  // a resumed rank
  one.set_position(100);
  r0.set_position(100);
  for (int step = 100; step < 600; ++step) {
    const auto a = one.next(), b0 = r0.next(), b1 = r1.next();
    ASSERT_EQ(std::tie(b0.modality, b0.dataset), std::tie(b1.modality, b1.dataset)) << step;
    ASSERT_EQ(std::tie(a.modality, a.dataset), std::tie(b0.modality, b0.dataset)) << step;
    std::vector<int64_t> cat = b0.indices;
    cat.insert(cat.end(), b1.indices.begin(), b1.indices.end());
    ASSERT_EQ(cat, a.indices) << step;
  }
}

// Without dataset weights the datasets change nothing: the same batches as a
// sampler that was never told them (a group's datasets mixed in its batches).
TEST(SamplerDatasets, WithoutDatasetWeightsBatchesAreUnchanged) {
  const DatasetPools d;
  DistributedSampler plain(d.pool, 4, 0, 1, 3), told(d.pool, 4, 0, 1, 3, {}, d.datasets);
  EXPECT_EQ(plain.weights(), mixing_weights({{"xray", 800}, {"ct", 300}}, {}));
  std::set<std::string> mixed;
  for (int step = 0; step < 300; ++step) {
    const auto a = plain.next(), b = told.next();
    ASSERT_EQ(a.modality, b.modality);
    ASSERT_EQ(a.indices, b.indices);
    EXPECT_EQ(b.dataset, "");
    if (a.modality == "xray") {
      std::set<std::string> in;
      for (int64_t i : a.indices) in.insert(d.dataset_of("xray", i));
      if (in.size() > 1) mixed.insert("xray");
    }
  }
  EXPECT_EQ(mixed.count("xray"), 1u);  // batches mix a and b
}

// A modality whose datasets all weigh 0 is never drawn; the others take its share.
TEST(SamplerDatasets, ZeroWeightDatasetsAreNeverDrawn) {
  const DatasetPools d;
  DistributedSampler s(d.pool, 4, 0, 1, 5, dataset_mixing({"a", "b", "c"}, {0, 0, 1}), d.datasets);
  const auto w = s.pool_weights();
  ASSERT_EQ(w.size(), 2u);
  EXPECT_NEAR(w.at({"ct", "c"}), 0.5, 1e-12);
  EXPECT_NEAR(w.at({"ct", ""}), 0.5, 1e-12);
  for (int step = 0; step < 200; ++step) EXPECT_EQ(s.next().modality, "ct");
}

TEST(SamplerDatasets, BadDatasetWeightsAreErrorsNamingTheKey) {
  const DatasetPools d;
  auto error = [&](const MixingConfig& m) -> std::string {
    try {
      DistributedSampler(d.pool, 4, 0, 1, 5, m, d.datasets);
    } catch (const config::Error& e) {
      return e.what();
    }
    return "no error";
  };
  using ::testing::HasSubstr;
  EXPECT_THAT(error(dataset_mixing({"a", "kvasir"}, {1, 2})),
              HasSubstr("config key 'loader.datasets': dataset 'kvasir' is not among the "
                        "training samples' datasets (present: '', 'a', 'b', 'c')"));
  EXPECT_THAT(error(dataset_mixing({"a", "b"}, {1})),
              HasSubstr("'loader.datasets' (2 names) and 'loader.dataset_weights' (1 weights)"));
  EXPECT_THAT(error(dataset_mixing({"a", "a"}, {1, 2})),
              HasSubstr("'loader.datasets' lists a dataset twice"));
  EXPECT_THAT(error(dataset_mixing({"a", "b"}, {0, 0})),
              HasSubstr("'loader.dataset_weights': every weight is 0"));
  EXPECT_THAT(error(dataset_mixing({"a"}, {-1})), HasSubstr("weight -1 of 'a' is below 0"));
  // Samples without their datasets cannot be weighed.
  EXPECT_THROW(DistributedSampler(d.pool, 4, 0, 1, 5, dataset_mixing({"a"}, {1})), Error);
  // Read through the typed config: --set keys (sweepable), range-checked and validated.
  const auto ok = config::load<Root>(
      std::nullopt, {"loader.datasets=[\"a\", \"b\"]", "loader.dataset_weights=[1, 3]"});
  EXPECT_EQ(ok.loader.mixing_config().datasets, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(ok.loader.mixing_config().dataset_weights, (std::vector<double>{1, 3}));
  EXPECT_THROW(
      config::load<Root>(std::nullopt, {"loader.datasets=[\"a\"]", "loader.dataset_weights=[-1]"}),
      config::Error);
  try {
    config::load<Root>(std::nullopt, {"loader.datasets=[\"a\"]"});
    FAIL() << "expected an error";
  } catch (const config::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("'loader.datasets' (1 names) and 'loader.dataset_weights'"));
  }
}

}  // namespace
}  // namespace m3ret::sharding
