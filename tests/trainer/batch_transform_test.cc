// The trainer's per-sample work runs on the loader's worker threads
// (trainer/batch_transform.h) and gives exactly the inputs that preparing the
// batch on the training thread gives; objectives refuse unprepared batches.
#include <gtest/gtest.h>

#include <cmath>
#include <mutex>
#include <set>
#include <thread>

#include <torch/torch.h>

#include "sharding/loader.h"
#include "sharding/shard_set.h"
#include "test_util.h"
#include "model/augment.h"
#include "model/mae.h"
#include "model/objective.h"
#include "model/settings.h"
#include "trainer/batch_transform.h"
#include "trainer/trainer_test_util.h"

namespace m3ret::trainer {
namespace {

namespace stdfs = std::filesystem;

using testing::tiny_settings;

std::map<std::string, std::vector<int64_t>> all_samples(const sharding::ShardSet& shards) {
  std::map<std::string, std::vector<int64_t>> pool;
  for (const char* m : {"xray", "endoscopy"})
    for (int64_t i = 0; i < shards.info(m).count; ++i) pool[m].push_back(i);
  return pool;
}

void expect_same_inputs(const TrainBatch& x, const TrainBatch& y) {
  ASSERT_EQ(x.seeds, y.seeds);
  ASSERT_EQ(x.mae.has_value(), y.mae.has_value());
  ASSERT_EQ(x.simdino.has_value(), y.simdino.has_value());
  if (x.mae) {
    EXPECT_TRUE(torch::equal(x.mae->view, y.mae->view));
    EXPECT_TRUE(torch::equal(x.mae->keep, y.mae->keep));
    EXPECT_TRUE(torch::equal(x.mae->mask, y.mae->mask));
  }
  if (x.simdino) {
    EXPECT_TRUE(torch::equal(x.simdino->global, y.simdino->global));
    EXPECT_TRUE(torch::equal(x.simdino->local, y.simdino->local));
  }
}

TEST(BatchTransform, PreparesOnTheLoaderWorkersExactlyAsOnTheTrainingThread) {
  testing::TempDir tmp("batch-transform");
  testing::write_mixed_dataset(tmp / "shards");
  auto shards = sharding::ShardSet::open(tmp / "shards");
  const uint64_t seed = 5;
  const int rank = 1, world = 2;  // rank 1 of 2: seeds use the global sample index
  const int64_t per_rank = 4, accum = 2;
  auto s = tiny_settings("mae+simdino");
  torch::manual_seed(0);
  Model model(s, nullptr);

  // The trainer's transform, wrapped to record where and with how many torch
  // threads it ran.
  std::mutex mu;
  std::set<std::thread::id> threads;
  std::set<int> torch_threads;
  auto transform = make_batch_transform(model.objective, seed, rank, accum);
  sharding::BatchTransform recording = [&](sharding::LoadedBatch& b) {
    transform(b);
    std::lock_guard<std::mutex> lock(mu);
    threads.insert(std::this_thread::get_id());
    torch_threads.insert(at::get_num_threads());
  };
  sharding::LoaderConfig cfg;
  cfg.workers = 2;
  sharding::Loader loader(
      *shards, sharding::DistributedSampler(all_samples(*shards), per_rank, rank, world, seed), cfg,
      recording);
  // The same batches, read without a transform (the training-thread path).
  sharding::Loader plain(
      *shards, sharding::DistributedSampler(all_samples(*shards), per_rank, rank, world, seed),
      cfg);

  std::set<std::string> modalities;
  for (int step = 0; step < 6; ++step) {
    auto b = loader.next();
    auto raw = plain.next();
    ASSERT_EQ(b.step, step);
    modalities.insert(b.modality);
    EXPECT_TRUE(b.pixels.empty()) << "the transform releases the pixels";
    auto& prepared = prepared_step(b);
    ASSERT_EQ(prepared.micro.size(), size_t(accum));
    // On the training thread: convert, prepare the whole batch, split.
    TrainBatch whole = to_train_batch(raw, seed, rank);
    for (int64_t i = 0; i < per_rank; ++i)
      EXPECT_EQ(whole.seeds[size_t(i)], sample_seed(seed, step, rank * per_rank + i));
    model.objective->prepare(whole);
    for (int64_t a = 0; a < accum; ++a) {
      const TrainBatch& micro = prepared.micro[size_t(a)];
      EXPECT_NE(micro.prepared_on, std::this_thread::get_id()) << "prepared on the training thread";
      EXPECT_FALSE(micro.images.defined()) << "images are dropped after prepare()";
      EXPECT_EQ(micro.step, step);
      // The micro-batch = samples [a*m, (a+1)*m) of the whole batch, with the
      // same seeds, views and masks (view-major concatenation for SimDINO).
      const int64_t m = per_rank / accum;
      TrainBatch part;
      part.seeds.assign(whole.seeds.begin() + a * m, whole.seeds.begin() + (a + 1) * m);
      part.mae = MaeInput{whole.mae->view.narrow(0, a * m, m), whole.mae->keep.narrow(0, a * m, m),
                          whole.mae->mask.narrow(0, a * m, m), whole.mae->grid};
      auto pick = [&](const torch::Tensor& t, int64_t views) {
        std::vector<torch::Tensor> parts;
        for (int64_t v = 0; v < views; ++v) parts.push_back(t.narrow(0, v * per_rank + a * m, m));
        return torch::cat(parts, 0);
      };
      part.simdino = SimDinoInput{pick(whole.simdino->global, 2),
                                  pick(whole.simdino->local, s.simdino.local_crops)};
      expect_same_inputs(micro, part);
      // The same inputs give the same loss (bitwise).
      TrainBatch here;
      here.step = step;
      here.images = to_train_batch(raw, seed, rank).images.narrow(0, a * m, m);
      here.seeds = part.seeds;
      model.objective->prepare(here);
      expect_same_inputs(micro, here);
      EXPECT_EQ(model.objective->compute(micro).total.item<double>(),
                model.objective->compute(here).total.item<double>());
    }
  }
  EXPECT_EQ(modalities.size(), 2u) << "both an image and a clip batch were checked";
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_FALSE(threads.count(std::this_thread::get_id()));
  EXPECT_EQ(torch_threads, std::set<int>{1}) << "workers run torch single-threaded";
}

TEST(BatchTransform, ObjectivesRefuseUnpreparedBatchesAndTheTrainerRefusesUntransformedOnes) {
  for (const char* objective : {"mae", "simdino", "mae+simdino"}) {
    auto s = tiny_settings(objective);
    Model model(s, nullptr);
    TrainBatch b{torch::rand({2, 1, 1, 16, 16}), {sample_seed(1, 7, 0), sample_seed(1, 7, 1)}, 7};
    try {
      model.objective->compute(b);
      FAIL() << objective << ": expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("step 7 was not prepared"), std::string::npos)
          << e.what();
    }
    model.objective->prepare(b);
    EXPECT_TRUE(std::isfinite(model.objective->compute(b).total.item<double>()));
    TrainBatch no_seeds{torch::rand({2, 1, 1, 16, 16}), {}, 3};
    EXPECT_THROW(model.objective->prepare(no_seeds), Error);
  }
  sharding::LoadedBatch raw;
  raw.step = 12;
  try {
    prepared_step(raw);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 12"), std::string::npos) << e.what();
  }
  // A batch that the micro-batch count does not divide.
  auto s = tiny_settings("mae");
  Model model(s, nullptr);
  raw.B = 3, raw.C = 1, raw.T = 1, raw.H = 16, raw.W = 16;
  raw.pixels.assign(3 * 16 * 16, 7);
  auto transform = make_batch_transform(model.objective, 1, 0, 2);
  EXPECT_THROW(transform(raw), Error);
}

}  // namespace
}  // namespace m3ret::trainer
