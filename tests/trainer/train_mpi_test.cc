// The training loop end to end on 2 ranks over real shards: metrics,
// checkpoints, and a stopped-and-resumed run equal to an uninterrupted one.
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/communicator.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/mpi_communicator.h"
#include "core/runtime.h"
#include "test_util.h"
#include "model/objective.h"
#include "trainer/checkpoint.h"
#include "trainer/schedule.h"
#include "trainer/trainer.h"
#include "trainer/trainer_test_util.h"

namespace m3ret::trainer {
namespace {

namespace stdfs = std::filesystem;

TrainOptions options(const stdfs::path& shards, const stdfs::path& run,
                     const std::string& objective = "mae+simdino") {
  TrainOptions o;
  o.shards = shards;
  o.run_dir = run;
  o.resolved_config_toml =
      "[model]\npreset = \"tiny\"\nwidth = 32\ndepth = 1\nheads = 2\ntubelet = [2, 8, 8]\n";
  auto& s = o.settings;
  s = testing::tiny_settings(objective, /*depth=*/1, /*local_crops=*/1);
  s.train.weight_decay_end = 0.2;  // cosine from 0.05: checked in metrics.jsonl
  s.train.global_batch_size = 4;
  s.train.max_steps = 4;
  s.train.warmup_steps = 1;
  s.train.lr = 1e-3;
  s.train.checkpoint_every = 2;
  s.train.keep_last = 5;
  s.train.deterministic = true;
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

std::vector<std::pair<std::string, torch::Tensor>> named_weights(const stdfs::path& ckpt,
                                                                 const Settings& s) {
  Model m(s, nullptr);
  load_checkpoint(ckpt, &m, nullptr, false);
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& p : m.named_parameters()) out.emplace_back(p.key(), p.value().detach().clone());
  return out;
}

std::vector<torch::Tensor> weights(const stdfs::path& ckpt, const Settings& s) {
  std::vector<torch::Tensor> out;
  for (auto& [name, w] : named_weights(ckpt, s)) out.push_back(w);
  return out;
}

// 1 rank vs 2 ranks: the same losses and gradient norms at every step up to
// float summation order, and the same weights. One slice is exempt from the
// per-weight bound: an attention key bias shifts every logit of a query by
// the same q.b_k, which softmax cancels, so its exact gradient is zero and
// each run's gradient there is summation noise. Adam normalises that noise
// into steps of about +-lr with a sign that depends on the order of the sums
// (measured: up to 1.0e-3 after 4 steps, against at most 1.3e-6 for every
// other weight, under the bound of lr / 20 = 5e-5). It stays in the mean.
void expect_equivalent(const stdfs::path& run_x, const stdfs::path& run_y, const Settings& s,
                       const std::string& what) {
  auto mx = read_metrics(run_x), my = read_metrics(run_y);
  ASSERT_EQ(mx.size(), my.size()) << what;
  for (size_t i = 0; i < mx.size(); ++i) {
    for (const char* k : {"loss", "mae", "simdino_align", "simdino_rate", "grad_norm"}) {
      if (mx[i].contains(k) || my[i].contains(k)) {
        EXPECT_NEAR(mx[i][k].get<double>(), my[i][k].get<double>(),
                    1e-5 * (1 + std::abs(mx[i][k].get<double>())))
            << what << ": " << k << " step " << i + 1;
      }
    }
  }
  auto cx = find_latest_valid(run_x), cy = find_latest_valid(run_y);
  ASSERT_TRUE(cx && cy) << what;
  auto wx = named_weights(*cx, s), wy = named_weights(*cy, s);
  ASSERT_EQ(wx.size(), wy.size());
  double worst = 0, sum = 0, count = 0;
  std::string worst_name;
  int64_t key_biases = 0;
  for (size_t i = 0; i < wx.size(); ++i) {
    const auto& name = wx[i].first;
    ASSERT_EQ(name, wy[i].first);
    auto d = (wx[i].second - wy[i].second).abs();
    sum += d.sum().item<double>();
    count += d.numel();
    if (name.size() >= 8 && name.compare(name.size() - 8, 8, "qkv.bias") == 0) {
      const int64_t width = d.numel() / 3;  // [q | k | v]
      d = torch::cat({d.slice(0, 0, width), d.slice(0, 2 * width)});
      ++key_biases;
    }
    if (const double m = d.max().item<double>(); m > worst) {
      worst = m;
      worst_name = name;
    }
  }
  EXPECT_GT(key_biases, 0) << what << ": no attention key bias found among the weights";
  EXPECT_LT(worst, s.train.lr / 20) << what << ": largest difference in " << worst_name;
  EXPECT_LT(sum / count, 1e-5) << what;
}

// Every objective alone and both together: (a) 2 ranks == 1 rank with the
// same global batch, (b) stopped-and-resumed == uninterrupted (bitwise), a
// SIGUSR1 preemption resumes exactly, and for MAE gradient accumulation
// (1 rank x 2 micro-batches == 1 rank x 1 == 2 ranks x 1).
class TrainObjective : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainObjective, RunsWritesMetricsResumesExactlyAndMatchesOneRank) {
  const std::string objective = GetParam();
  auto& comm = Runtime::get().world_comm();
  testing::TempDir tmp("trainer-e2e");
  if (comm.rank() == 0) testing::write_mixed_dataset(tmp / "shards");
  comm.barrier();

  // Uninterrupted.
  auto a = options(tmp / "shards", tmp / "run-a", objective);
  train(a, comm);
  // Stopped after 2 steps, then resumed to the end.
  auto b = options(tmp / "shards", tmp / "run-b", objective);
  b.stop_after_steps = 2;
  train(b, comm);
  b.stop_after_steps = 0;
  b.resume_auto = true;
  train(b, comm);
  // Preempted: SIGUSR1 to rank 1 only (not the checkpoint writer) during step
  // 1; every rank finishes step 1, rank 0 checkpoints it, both return; then resumed.
  auto d = options(tmp / "shards", tmp / "run-d", objective);
  install_preemption_handlers();
  d.on_step = [&](int64_t step) {
    if (comm.rank() == 1 && step == 1) std::raise(SIGUSR1);
  };
  auto rd = train(d, comm);
  d.on_step = nullptr;
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
    train(options(tmp / "shards", tmp / "run-c", objective), self);
    if (objective == "mae") {
      // Gradient accumulation: 1 rank, 2 micro-batches of 2 per step.
      auto e = options(tmp / "shards", tmp / "run-e", objective);
      e.settings.train.grad_accum_steps = 2;
      train(e, self);
    }
  }
  comm.barrier();

  if (comm.rank() == 0) {
    std::ifstream f(tmp / "run-a" / "metrics.jsonl");
    std::string line;
    int64_t n = 0;
    while (std::getline(f, line)) {
      auto j = nlohmann::json::parse(line);
      EXPECT_EQ(j["step"].get<int64_t>(), ++n);
      for (const char* k :
           {"loss", "lr", "wd", "grad_norm", "samples_per_s", "tokens_per_s", "time_data_s",
            "time_compute_s", "time_comm_s", "time_optim_s", "buckets", "buckets_overlapped"})
        EXPECT_TRUE(j.contains(k)) << k;
      for (const char* k : {"mae", "simdino", "simdino_align", "simdino_rate", "simdino_gamma"})
        EXPECT_EQ(j.contains(k), objective.find(std::string(k).substr(0, 3)) != std::string::npos)
            << k;
      // The loss is its logged terms: -coeff * align - gamma * rate (+ MAE times its weight),
      // with gamma = (p + N m) / (p N m) for the head width p, 2 samples per rank, 2 ranks.
      double expect = 0;
      if (j.contains("mae")) expect += a.settings.mae.weight * j["mae"].get<double>();
      if (j.contains("simdino_align")) {
        const double p = static_cast<double>(a.settings.simdino.head_out);
        EXPECT_NEAR(j["simdino_gamma"].get<double>(), (p + 4.0) / (p * 4.0), 1e-12);
        EXPECT_GT(j["simdino_rate"].get<double>(), 0.0);
        expect += a.settings.simdino.weight *
                  (-a.settings.simdino.coeff * j["simdino_align"].get<double>() -
                   j["simdino_gamma"].get<double>() * j["simdino_rate"].get<double>());
      }
      EXPECT_NEAR(j["loss"].get<double>(), expect, 1e-5 * (1 + std::abs(expect)));
      // The weight-decay schedule: a cosine from 0.05 at step 0 towards 0.2.
      EXPECT_DOUBLE_EQ(j["wd"].get<double>(), weight_decay(a.settings.train, n - 1));
    }
    EXPECT_EQ(read_metrics(tmp / "run-a")[0]["wd"].get<double>(), 0.05);
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
    // 1 rank with batch 4 == 2 ranks with batch 2.
    expect_equivalent(tmp / "run-a", tmp / "run-c", a.settings, "2 ranks vs 1 rank");
    if (objective == "mae") {
      expect_equivalent(tmp / "run-c", tmp / "run-e", a.settings, "1 rank: accum 1 vs accum 2");
      expect_equivalent(tmp / "run-a", tmp / "run-e", a.settings, "2 ranks x 1 vs 1 rank x 2");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Objectives, TrainObjective,
                         ::testing::Values("mae+simdino", "mae", "simdino"), [](const auto& info) {
                           std::string n = info.param;
                           return n == "mae+simdino" ? std::string("MaeSimDino") : n;
                         });

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
  // 4 over 2 ranks = 2 per rank: 4 micro-batches do not divide it.
  o.settings.train.global_batch_size = 4;
  o.settings.train.grad_accum_steps = 4;
  try {
    train(o, comm);
    FAIL() << "expected an error";
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.grad_accum_steps"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("train.global_batch_size"), std::string::npos) << e.what();
  }
}

// A loss that is no longer finite stops every rank with an error naming the
// step, before the step's update is checkpointed: the newest checkpoint, if
// any, holds finite weights. (A learning rate of 1e30 makes float32 overflow.)
TEST(Train, ANonFiniteLossStopsEveryRankBeforeItsStepIsCheckpointed) {
  auto& comm = Runtime::get().world_comm();
  testing::TempDir tmp("trainer-diverge");
  if (comm.rank() == 0) testing::write_mixed_dataset(tmp / "shards");
  comm.barrier();
  auto o = options(tmp / "shards", tmp / "run", "mae");
  o.settings.train.lr = 1e30;
  o.settings.train.warmup_steps = 0;
  o.settings.train.max_steps = 6;
  o.settings.train.checkpoint_every = 1;
  std::string error;
  try {
    train(o, comm);
  } catch (const Error& e) {
    error = e.what();
  }
  ASSERT_NE(error.find("training diverged: non-finite loss at step "), std::string::npos)
      << (error.empty() ? "no error" : error);
  const int64_t step = std::stoll(error.substr(error.find("at step ") + 8));
  EXPECT_GE(step, 1);
  EXPECT_EQ(read_metrics(tmp / "run").size(), static_cast<size_t>(step - 1)) << error;
  if (auto ck = find_latest_valid(tmp / "run")) {
    EXPECT_EQ(ck->filename().string(), checkpoint_name(step - 1)) << error;
    for (auto& w : weights(*ck, o.settings))
      EXPECT_TRUE(torch::isfinite(w).all().item<bool>()) << ck->string();
  }
  comm.barrier();
}

// train.clip_grad = 0 turns clipping off: the run trains and still logs the
// gradient norm (LibTorch's clip_grad_norm_ refused the "no limit" it was given).
TEST(Train, ClippingOffTrainsAndLogsTheGradientNorm) {
  auto& comm = Runtime::get().world_comm();
  testing::TempDir tmp("trainer-noclip");
  if (comm.rank() == 0) testing::write_mixed_dataset(tmp / "shards");
  comm.barrier();
  auto o = options(tmp / "shards", tmp / "run", "mae");
  o.settings.train.clip_grad = 0;
  o.settings.train.max_steps = 2;
  EXPECT_EQ(train(o, comm).step, 2);
  if (comm.rank() == 0) {
    const auto metrics = read_metrics(tmp / "run");
    ASSERT_EQ(metrics.size(), 2u);
    for (const auto& m : metrics) EXPECT_GT(m["grad_norm"].get<double>(), 0.0) << m.dump();
  }
  comm.barrier();
}

// A stop requested before the first step ends the run cleanly (preempted, no
// new checkpoint, no metrics line); a checkpoint beyond train.max_steps is
// refused naming the key instead of replaying its sampler.
TEST(Train, StopBeforeTheFirstStepAndACheckpointBeyondMaxSteps) {
  auto& comm = Runtime::get().world_comm();
  testing::TempDir tmp("trainer-early-stop");
  if (comm.rank() == 0) testing::write_mixed_dataset(tmp / "shards");
  comm.barrier();
  auto o = options(tmp / "shards", tmp / "run", "mae");
  o.stop_after_steps = 2;
  train(o, comm);
  o.stop_after_steps = 0;
  o.resume_auto = true;
  install_preemption_handlers();
  if (comm.rank() == 1) std::raise(SIGTERM);  // a stop on one rank only, during start-up
  auto r = train(o, comm);
  clear_stop_request();
  EXPECT_TRUE(r.preempted);
  EXPECT_EQ(r.step, 2);
  comm.barrier();
  if (comm.rank() == 0) {
    EXPECT_EQ(read_metrics(tmp / "run").size(), 2u);
    EXPECT_EQ(find_latest_valid(tmp / "run")->filename(), "step-000000002");
  }
  // A crafted sampler position (with a matching checksum) far from the step.
  const auto ck = tmp / "run" / "checkpoints" / "step-000000002";
  const std::string good = fs::read_file(ck / "state.json");
  comm.barrier();
  if (comm.rank() == 0) {
    auto st = nlohmann::json::parse(good);
    st["sampler_position"] = int64_t{1} << 39;
    fs::write_atomic(ck / "state.json", st.dump());
    auto manifest = nlohmann::json::parse(fs::read_file(ck / "manifest.json"));
    manifest["files"]["state.json"] = fs::checksum_file(ck / "state.json");
    fs::write_atomic(ck / "manifest.json", manifest.dump());
  }
  comm.barrier();
  try {
    train(o, comm);
    ADD_FAILURE() << "resumed from a crafted sampler position";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("state.json: 'sampler_position' = 549755813888 does "
                                         "not match 'step' = 2"),
              std::string::npos)
        << e.what();
  }
  comm.barrier();
  if (comm.rank() == 0) {
    fs::write_atomic(ck / "state.json", good);
    auto manifest = nlohmann::json::parse(fs::read_file(ck / "manifest.json"));
    manifest["files"]["state.json"] = fs::checksum_file(ck / "state.json");
    fs::write_atomic(ck / "manifest.json", manifest.dump());
  }
  comm.barrier();
  o.settings.train.max_steps = 1;
  try {
    train(o, comm);
    ADD_FAILURE() << "resumed past train.max_steps";
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.max_steps"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("step-000000002"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace m3ret::trainer
