// 2 ranks: broadcast of the initial weights, gradient averaging equal to the
// 1-rank full-batch gradient, identical weights after optimizer steps, and the
// all-reduced coding rate equal to the full-batch one.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "core/communicator.h"
#include "core/runtime.h"
#include "trainer/grad_sync.h"
#include "trainer/schedule.h"
#include "trainer/simdino.h"
#include "trainer/vit.h"

namespace m3ret::trainer {
namespace {

VitSpec spec() {
  VitSpec s;
  s.width = 32;
  s.depth = 2;
  s.heads = 2;
  s.tube_t = 1;
  s.patch_h = s.patch_w = 4;
  return s;
}

// A deterministic global batch of 4 images (the same on every rank).
torch::Tensor global_batch() {
  auto k = torch::arange(4 * 1 * 1 * 8 * 8, torch::kFloat32).reshape({4, 1, 1, 8, 8});
  return (torch::sin(0.37 * k) + 1) / 2;
}

torch::Tensor loss_of(Encoder& enc, const torch::Tensor& x) {
  return enc.forward(x).pow(2).mean() + enc.embed(x).sum(1).pow(2).mean();
}

std::vector<torch::Tensor> flat(torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters()) out.push_back(p.detach().clone());
  return out;
}

// True when `t` holds the same values on every rank (rank 0's are broadcast).
bool same_on_all_ranks(const torch::Tensor& t, Communicator& comm) {
  auto mine = t.contiguous().clone();
  auto root = mine.clone();
  comm.broadcast(root.data_ptr(), root.numel() * root.element_size(), 0);
  return comm.all(torch::equal(mine, root));
}

TEST(GradSync, AveragedGradientsEqualTheFullBatchGradient) {
  auto& comm = Runtime::get().world_comm();
  ASSERT_EQ(comm.size(), 2);
  const int r = comm.rank();

  // Different initial weights per rank; the broadcast makes them rank 0's.
  torch::manual_seed(100 + r);
  Encoder enc(spec());
  broadcast_module(enc, comm);
  for (auto& p : enc.parameters()) ASSERT_TRUE(same_on_all_ranks(p, comm));

  // Reference: the full batch on one model (every rank computes it).
  torch::manual_seed(100);
  Encoder ref(spec());
  for (size_t i = 0; i < ref.parameters().size(); ++i)
    ASSERT_TRUE(torch::equal(ref.parameters()[i], enc.parameters()[i]));
  auto x = global_batch();
  loss_of(ref, x).backward();

  // Each rank its half; small buckets to exercise several.
  GradientReducer reducer(trainable_parameters(enc), comm, /*bucket_bytes=*/16 * 1024);
  EXPECT_GT(reducer.bucket_count(), 2u);
  loss_of(enc, x.narrow(0, 2 * r, 2)).backward();
  reducer.average();
  auto pe = enc.parameters(), pr = ref.parameters();
  for (size_t i = 0; i < pe.size(); ++i) {
    EXPECT_TRUE(torch::allclose(pe[i].grad(), pr[i].grad(), 1e-4, 1e-6)) << "parameter " << i;
    EXPECT_TRUE(same_on_all_ranks(pe[i].grad(), comm)) << "parameter " << i;
  }

  // A few AdamW steps keep the ranks bit-identical.
  TrainConfig tc;
  auto opt = make_optimizer(enc, tc);
  for (int step = 0; step < 3; ++step) {
    opt->zero_grad();
    loss_of(enc, x.narrow(0, 2 * r, 2)).backward();
    reducer.average();
    opt->step();
  }
  for (auto& p : enc.parameters()) EXPECT_TRUE(same_on_all_ranks(p, comm));
}

TEST(GradSync, ParameterWithoutGradientGetsTheAverage) {
  auto& comm = Runtime::get().world_comm();
  auto a = torch::ones({3}, torch::requires_grad());
  auto b = torch::ones({2}, torch::requires_grad());
  // Only rank 1 produces a gradient for b.
  auto loss = a.sum() * (comm.rank() + 1) + (comm.rank() == 1 ? b.sum() * 4 : torch::zeros({}));
  loss.backward();
  GradientReducer reducer({a, b}, comm);
  reducer.average();
  EXPECT_TRUE(torch::allclose(a.grad(), torch::full({3}, 1.5f)));
  ASSERT_TRUE(b.grad().defined());
  EXPECT_TRUE(torch::allclose(b.grad(), torch::full({2}, 2.0f)));
}

TEST(GradSync, AllReducedCodingRateEqualsTheFullBatchOne) {
  auto& comm = Runtime::get().world_comm();
  const int r = comm.rank();
  auto z = torch::sin(torch::arange(8 * 6, torch::kFloat64).reshape({8, 6}) * 0.71);
  auto full = z.clone().requires_grad_(true);
  auto rf = coding_rate(full, 0.05);
  rf.backward();
  auto mine = z.narrow(0, 4 * r, 4).clone().requires_grad_(true);
  auto rm = coding_rate(mine, 0.05, &comm);
  rm.backward();
  EXPECT_NEAR(rm.item<double>(), rf.item<double>(), 1e-10);
  // Averaging over 2 ranks of (2 x local gradient) gives the full gradient.
  EXPECT_TRUE(torch::allclose(mine.grad() / 2, full.grad().narrow(0, 4 * r, 4), 1e-9, 1e-12));
}

}  // namespace
}  // namespace m3ret::trainer
