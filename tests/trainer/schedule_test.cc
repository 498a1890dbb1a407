// The learning-rate and weight-decay schedules, the optimizer's parameter
// groups and the batch split (trainer/schedule.h, model/config.h).
#include <gtest/gtest.h>

#include <cmath>

#include <torch/torch.h>

#include "model/config.h"
#include "trainer/schedule.h"

namespace m3ret::trainer {
namespace {

TEST(Schedule, WarmupCosineAndBatchSplit) {
  TrainConfig c;
  c.lr = 1e-3;
  c.min_lr = 1e-5;
  c.warmup_steps = 10;
  c.max_steps = 110;
  EXPECT_NEAR(learning_rate(c, 0), 1e-4, 1e-12);
  EXPECT_NEAR(learning_rate(c, 9), 1e-3, 1e-12);
  EXPECT_NEAR(learning_rate(c, 10), 1e-3, 1e-12);
  EXPECT_NEAR(learning_rate(c, 60), (1e-3 + 1e-5) / 2, 1e-12);
  EXPECT_NEAR(learning_rate(c, 110), 1e-5, 1e-12);
  c.global_batch_size = 30;
  EXPECT_EQ(c.per_rank_batch(3), 10);
  try {
    c.per_rank_batch(4);
    FAIL() << "expected an error";
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.global_batch_size"), std::string::npos);
  }
}

TEST(Schedule, WeightDecayCosineReachesTheOptimizersDecayedGroupOnly) {
  TrainConfig c;
  c.max_steps = 100;
  c.weight_decay = 0.04;
  // Default: constant.
  for (int64_t step : {0, 37, 100}) EXPECT_EQ(weight_decay(c, step), 0.04);
  // DINO's cosine: start at step 0, the mean half way, the end value at max_steps.
  c.weight_decay_end = 0.4;
  EXPECT_EQ(weight_decay(c, 0), 0.04);
  EXPECT_NEAR(weight_decay(c, 50), 0.22, 1e-12);
  EXPECT_NEAR(weight_decay(c, 25), 0.4 + (0.04 - 0.4) * 0.5 * (1 + std::cos(M_PI / 4)), 1e-12);
  EXPECT_DOUBLE_EQ(weight_decay(c, 100), 0.4);
  EXPECT_DOUBLE_EQ(weight_decay(c, 150), 0.4);
  double prev = 0;
  for (int64_t step = 0; step <= 100; ++step) {
    EXPECT_GE(weight_decay(c, step), prev);
    prev = weight_decay(c, step);
  }
  // Validation: -1 means constant; other negative values name the key.
  c.weight_decay_end = -0.5;
  try {
    c.validate();
    FAIL() << "expected an error";
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.weight_decay_end"), std::string::npos);
  }

  // The optimizer: group 0 (matrices) gets it, group 1 (biases, norms) stays 0,
  // and AdamW applies it: with a zero gradient, p <- p (1 - lr wd).
  torch::manual_seed(9);
  torch::nn::Sequential net(torch::nn::Linear(4, 3), torch::nn::LayerNorm(std::vector<int64_t>{3}));
  c.weight_decay_end = 0.4;
  auto opt = make_optimizer(*net, c);
  ASSERT_EQ(opt->param_groups().size(), 2u);
  auto wd_of = [&](size_t g) {
    return static_cast<torch::optim::AdamWOptions&>(opt->param_groups()[g].options())
        .weight_decay();
  };
  EXPECT_DOUBLE_EQ(wd_of(kDecayGroup), 0.04);
  set_weight_decay(*opt, weight_decay(c, 50));
  set_learning_rate(*opt, 0.5);
  EXPECT_NEAR(wd_of(kDecayGroup), 0.22, 1e-12);
  EXPECT_EQ(wd_of(1), 0.0);
  auto weight = net->parameters()[0], bias = net->parameters()[1];
  ASSERT_EQ(weight.dim(), 2);
  auto w0 = weight.detach().clone(), b0 = bias.detach().clone();
  for (auto& p : net->parameters()) p.mutable_grad() = torch::zeros_like(p);
  opt->step();
  EXPECT_TRUE(torch::allclose(weight, w0 * (1 - 0.5 * 0.22), 1e-6, 1e-7));
  EXPECT_TRUE(torch::equal(bias, b0));
}

TEST(Schedule, MicroBatchDividesTheRanksShareOrNamesTheKeys) {
  TrainConfig c;
  c.global_batch_size = 24;
  c.grad_accum_steps = 2;
  EXPECT_EQ(c.micro_batch(3), 4);
  EXPECT_EQ(c.micro_batch(1), 12);
  c.grad_accum_steps = 3;
  EXPECT_EQ(c.micro_batch(2), 4);
  try {
    c.micro_batch(3);  // 8 per rank, 3 micro-batches
    FAIL() << "expected an error";
  } catch (const config::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("train.grad_accum_steps"), std::string::npos) << what;
    EXPECT_NE(what.find("train.global_batch_size"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace m3ret::trainer
