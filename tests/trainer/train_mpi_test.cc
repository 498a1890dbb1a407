// The training loop end to end on 2 ranks over real shards: metrics,
// checkpoints, and a stopped-and-resumed run equal to an uninterrupted one.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/communicator.h"
#include "core/mpi_communicator.h"
#include "core/runtime.h"
#include "sharding/shard_test_util.h"
#include "test_util.h"
#include "trainer/checkpoint.h"
#include "trainer/objective.h"
#include "trainer/trainer.h"

namespace m3ret::trainer {
namespace {

namespace stdfs = std::filesystem;

void write_dataset(const stdfs::path& dir) {
  std::vector<sharding::ShardEntry> entries;
  for (auto [m, C, T] : {std::tuple<const char*, int64_t, int64_t>{"xray", 1, 1}, {"endoscopy", 3, 4}}) {
    std::vector<data::Sample> samples;
    for (int64_t i = 0; i < 16; ++i) samples.push_back(testing::make_sample(m, i, C, T, 16, 16));
    auto e = testing::write_shards(dir, samples, 8, 1);
    entries.insert(entries.end(), e.begin(), e.end());
  }
  sharding::write_index(dir, sharding::build_index(entries, {{"manifest", "test"}}));
}

TrainOptions options(const stdfs::path& shards, const stdfs::path& run) {
  TrainOptions o;
  o.shards = shards;
  o.run_dir = run;
  o.resolved_config_toml =
      "[model]\npreset = \"tiny\"\nwidth = 32\ndepth = 1\nheads = 2\ntubelet = [2, 8, 8]\n";
  auto& s = o.settings;
  s.model.preset = "tiny";
  s.model.width = 32;
  s.model.depth = 1;
  s.model.heads = 2;
  s.model.tubelet = {2, 8, 8};
  s.train.objective = "mae+simdino";
  s.train.global_batch_size = 4;
  s.train.max_steps = 4;
  s.train.warmup_steps = 1;
  s.train.lr = 1e-3;
  s.train.checkpoint_every = 2;
  s.train.keep_last = 5;
  s.train.deterministic = true;
  s.mae.decoder_width = 16;
  s.mae.decoder_depth = 1;
  s.mae.decoder_heads = 2;
  s.simdino.head_hidden = 16;
  s.simdino.head_out = 8;
  s.simdino.local_crops = 1;
  s.simdino.allreduce_cov = true;  // makes 2 ranks x 2 equal to 1 rank x 4
  o.loader.workers = 1;
  return o;
}

std::vector<nlohmann::json> read_metrics(const stdfs::path& run) {
  std::ifstream f(run / "metrics.jsonl");
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(f, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::vector<torch::Tensor> weights(const stdfs::path& ckpt, const Settings& s) {
  Model m(s, nullptr);
  load_checkpoint(ckpt, &m, nullptr, false);
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters()) out.push_back(p.detach().clone());
  return out;
}

TEST(Train, RunsWritesMetricsResumesExactlyAndMatchesOneRank) {
  auto& comm = Runtime::get().world_comm();
  testing::TempDir tmp("trainer-e2e");
  if (comm.rank() == 0) write_dataset(tmp / "shards");
  comm.barrier();

  // Uninterrupted.
  auto a = options(tmp / "shards", tmp / "run-a");
  train(a, comm);
  // Stopped after 2 steps, then resumed to the end.
  auto b = options(tmp / "shards", tmp / "run-b");
  b.stop_after_steps = 2;
  train(b, comm);
  b.stop_after_steps = 0;
  b.resume_auto = true;
  train(b, comm);
  // Preempted: SIGUSR1 to rank 1 only (not the checkpoint writer); every rank
  // finishes step 1, rank 0 checkpoints it, both return; then resumed.
  auto d = options(tmp / "shards", tmp / "run-d");
  install_preemption_handlers();
  if (comm.rank() == 1) std::raise(SIGUSR1);
  auto rd = train(d, comm);
  EXPECT_TRUE(rd.preempted);
  EXPECT_EQ(rd.step, 1);
  comm.barrier();
  EXPECT_TRUE(stdfs::exists(tmp / "run-d" / "checkpoints" / "step-000000001"));
  clear_stop_request();
  d.resume_auto = true;
  auto rd2 = train(d, comm);
  EXPECT_FALSE(rd2.preempted);
  EXPECT_EQ(rd2.step, 4);
  // The same global batch on one rank.
  if (comm.rank() == 0) {
    MpiCommunicator self(MPI_COMM_SELF);
    train(options(tmp / "shards", tmp / "run-c"), self);
  }
  comm.barrier();

  if (comm.rank() == 0) {
    std::ifstream f(tmp / "run-a" / "metrics.jsonl");
    std::string line;
    int64_t n = 0;
    while (std::getline(f, line)) {
      auto j = nlohmann::json::parse(line);
      EXPECT_EQ(j["step"].get<int64_t>(), ++n);
      for (const char* k : {"loss", "mae", "simdino", "lr", "grad_norm", "samples_per_s",
                            "tokens_per_s", "time_data_s", "time_compute_s", "time_comm_s",
                            "time_optim_s", "buckets", "buckets_overlapped"})
        EXPECT_TRUE(j.contains(k)) << k;
    }
    EXPECT_EQ(n, 4);
    auto ca = find_latest_valid(tmp / "run-a");
    auto cb = find_latest_valid(tmp / "run-b");
    ASSERT_TRUE(ca && cb);
    EXPECT_EQ(ca->filename(), "step-000000004");
    EXPECT_EQ(cb->filename(), "step-000000004");
    EXPECT_TRUE(stdfs::exists(tmp / "run-a" / "checkpoints" / "step-000000002"));
    auto wa = weights(*ca, a.settings), wb = weights(*cb, b.settings);
    ASSERT_EQ(wa.size(), wb.size());
    for (size_t i = 0; i < wa.size(); ++i)
      EXPECT_TRUE(torch::allclose(wa[i], wb[i], 1e-5, 1e-6)) << "parameter " << i;
    auto cd = find_latest_valid(tmp / "run-d");
    ASSERT_TRUE(cd);
    EXPECT_EQ(cd->filename(), "step-000000004");
    auto wd = weights(*cd, d.settings);
    for (size_t i = 0; i < wa.size(); ++i)
      EXPECT_TRUE(torch::equal(wa[i], wd[i])) << "preempted+resumed, parameter " << i;
    // 1 rank with batch 4 == 2 ranks with batch 2: the same losses and
    // gradient norms at every step up to float summation order (Adam turns
    // that order noise on near-zero gradients into weight differences < lr).
    auto ma = read_metrics(tmp / "run-a"), mc = read_metrics(tmp / "run-c");
    ASSERT_EQ(ma.size(), mc.size());
    for (size_t i = 0; i < ma.size(); ++i)
      for (const char* k : {"loss", "mae", "simdino_align", "simdino_rate", "grad_norm"})
        EXPECT_NEAR(ma[i][k].get<double>(), mc[i][k].get<double>(),
                    1e-5 * (1 + std::abs(ma[i][k].get<double>()))) << k << " step " << i + 1;
    auto cc = find_latest_valid(tmp / "run-c");
    ASSERT_TRUE(cc);
    auto wc = weights(*cc, a.settings);
    double worst = 0, sum = 0, count = 0;
    for (size_t i = 0; i < wa.size(); ++i) {
      auto d = (wa[i] - wc[i]).abs();
      worst = std::max(worst, d.max().item<double>());
      sum += d.sum().item<double>();
      count += d.numel();
    }
    EXPECT_LT(worst, a.settings.train.lr);
    EXPECT_LT(sum / count, 1e-5);
  }
}

TEST(Train, BatchNotDivisibleByRanksNamesTheKey) {
  auto& comm = Runtime::get().world_comm();
  auto o = options("/nonexistent", "/nonexistent");
  o.settings.train.global_batch_size = 3;
  try {
    train(o, comm);
    FAIL() << "expected an error";
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.global_batch_size"), std::string::npos);
  }
}

}  // namespace
}  // namespace m3ret::trainer
