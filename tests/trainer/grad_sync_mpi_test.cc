// 2 ranks: broadcast of the initial weights, gradient averaging equal to the
// 1-rank full-batch gradient, identical weights after optimizer steps, and the
// all-reduced coding rate equal to the full-batch one.
#include <gtest/gtest.h>

#include <chrono>

#include <torch/torch.h>

#include "core/communicator.h"
#include "core/mpi_communicator.h"
#include "core/runtime.h"
#include "model/simdino.h"
#include "model/vit.h"
#include "trainer/grad_sync.h"
#include "trainer/schedule.h"

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

// True when `t` holds the same values on every rank (rank 0's are broadcast).
bool same_on_all_ranks(const torch::Tensor& t, Communicator& comm) {
  auto mine = t.contiguous().clone();
  auto root = mine.clone();
  comm.broadcast(root.data_ptr(), root.numel() * root.element_size(), 0);
  return comm.all(torch::equal(mine, root));
}

// clip_gradients is LibTorch's clip_grad_norm_ without the host reading the norm: the same norm and
// the same clipped gradients (the reference is LibTorch's own function), when the norm exceeds the
// limit, when it does not, and with clipping off; a parameter without a gradient is left alone.
TEST(ClipGradients, EqualsLibTorchsClipGradNorm) {
  for (const double max_norm : {0.5, 1e3, 0.0}) {
    SCOPED_TRACE(max_norm);
    torch::manual_seed(7);
    std::vector<torch::Tensor> a, b;
    for (auto shape : {std::vector<int64_t>{3, 4}, {5}, {2, 2, 2}}) {
      auto p = torch::randn(shape).requires_grad_(true);
      p.mutable_grad() = torch::randn(shape);
      a.push_back(p);
      auto q = p.detach().clone().requires_grad_(true);
      q.mutable_grad() = p.grad().clone();
      b.push_back(q);
    }
    a.push_back(torch::zeros({2}).requires_grad_(true));  // no gradient
    b.push_back(torch::zeros({2}).requires_grad_(true));
    // (LibTorch refuses a limit beyond float's range: 1e30 stands for "off".)
    const double expected = torch::nn::utils::clip_grad_norm_(b, max_norm > 0 ? max_norm : 1e30);
    const auto norm = clip_gradients(a, max_norm);
    EXPECT_NEAR(norm.item<double>(), expected, 1e-5 * expected);
    if (max_norm == 0.5) {
      EXPECT_GT(expected, 1.0);  // the first case does clip
    }
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].grad().defined(), b[i].grad().defined());
      if (a[i].grad().defined()) {
        EXPECT_TRUE(torch::allclose(a[i].grad(), b[i].grad(), 1e-5, 1e-7)) << "parameter " << i;
      }
    }
  }
  EXPECT_EQ(clip_gradients({torch::zeros({2}).requires_grad_(true)}, 1.0).item<double>(), 0.0);
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
    zero_gradients(*opt);
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

// A deep MLP: 12 layers of 1 MB weights, one bucket per layer.
struct Mlp : torch::nn::Module {
  Mlp() {
    for (int i = 0; i < 12; ++i)
      layers.push_back(register_module("l" + std::to_string(i), torch::nn::Linear(512, 512)));
  }
  torch::Tensor forward(torch::Tensor x) {
    for (auto& l : layers) x = torch::tanh(l->forward(x));
    return x.pow(2).mean();
  }
  std::vector<torch::nn::Linear> layers;
};

TEST(GradSync, BucketsGoInReverseOrderAndAreReducedWhileBackwardRuns) {
  auto& comm = Runtime::get().world_comm();
  const int r = comm.rank();
  torch::manual_seed(7);
  Mlp net;
  auto x = torch::randn({1024, 512});  // the same global batch on both ranks
  // Reference: the full-batch gradient.
  Mlp ref;
  {
    torch::NoGradGuard g;
    for (size_t i = 0; i < ref.parameters().size(); ++i)
      ref.parameters()[i].copy_(net.parameters()[i]);
  }
  ref.forward(x).backward();

  auto params = trainable_parameters(net);
  GradientReducer reducer(params, comm, /*bucket_bytes=*/(1 << 20) + 4096);
  ASSERT_EQ(reducer.bucket_count(), 12u);
  // Buckets are filled greedily in reverse parameter order: bucket 0 starts
  // with the last layer (bias, weight: the first gradients backward makes) and
  // takes the next bias too; then (weight, previous bias) pairs; bucket 11
  // holds the first weight alone.
  EXPECT_EQ(reducer.bucket_params(0), (std::vector<size_t>{23, 22, 21}));
  EXPECT_EQ(reducer.bucket_params(1), (std::vector<size_t>{20, 19}));
  EXPECT_EQ(reducer.bucket_params(11), (std::vector<size_t>{0}));

  // Gradient accumulation: the first half of this rank's samples without
  // synchronisation, the second half armed.
  auto mine = x.narrow(0, 512 * r, 512);
  (net.forward(mine.narrow(0, 0, 256)) * 0.5).backward();
  comm.barrier();  // both ranks start the synchronised backward together
  reducer.arm();
  // Overlap, shown without timing: the first weight's gradient is the last one backward makes
  // (bucket 11 alone); its hook holds backward until 3 buckets are reduced, which only a
  // communication thread working during backward can do (the bound is only a hang guard).
  bool overlapped = false;
  auto hook = params[0].register_hook([&](const torch::Tensor& g) {
    overlapped = reducer.wait_for_reduced(3, std::chrono::minutes(2));
    return g;
  });
  (net.forward(mine.narrow(0, 256, 256)) * 0.5).backward();
  params[0].remove_hook(hook);
  EXPECT_TRUE(overlapped) << "no bucket was reduced while backward ran";
  reducer.average();

  const auto& st = reducer.stats();
  std::vector<int> expected(12);
  for (int i = 0; i < 12; ++i) expected[i] = i;
  EXPECT_EQ(st.order, expected);
  EXPECT_EQ(st.bytes, static_cast<int64_t>(params.size() / 2) * (512 * 512 + 512) * 4);
  // What the hook waited for is in the step's statistics too.
  EXPECT_GE(st.reduced_before_average, 3) << "buckets started during backward";
  EXPECT_GE(st.completed_before_average, 3) << "buckets finished during backward";
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(torch::allclose(params[i].grad(), ref.parameters()[i].grad(), 1e-4, 1e-7))
        << "parameter " << i;
    EXPECT_TRUE(same_on_all_ranks(params[i].grad(), comm)) << "parameter " << i;
  }
  // A second step reuses the buckets.
  for (auto& p : params) p.mutable_grad().zero_();
  reducer.arm();
  net.forward(mine).backward();
  reducer.average();
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(torch::allclose(params[i].grad(), ref.parameters()[i].grad(), 1e-4, 1e-7));
}

// True when `grad` lies inside bucket `b`'s storage.
bool in_bucket(const torch::Tensor& grad, const GradientReducer& reducer, size_t b) {
  const auto& flat = reducer.bucket_storage(b);
  const auto* lo = flat.data_ptr<float>();
  const auto* p = grad.data_ptr<float>();
  return p >= lo && p + grad.numel() <= lo + flat.numel();
}

// Gradients live in the buckets (no copy in or out): after average() every
// .grad is its slice of its bucket, zero_gradients() keeps it there,
// autograd accumulates into it, and a .grad reset to undefined or replaced by
// another tensor is taken back in. Each step's gradients stay the full-batch
// ones.
TEST(GradSync, GradientsLiveInTheBuckets) {
  auto& comm = Runtime::get().world_comm();
  const int r = comm.rank();
  torch::manual_seed(11);
  Mlp net;
  auto params = trainable_parameters(net);
  GradientReducer reducer(params, comm, /*bucket_bytes=*/(1 << 20) + 4096);
  ASSERT_EQ(reducer.bucket_count(), 12u);
  auto bucket_of = [&](size_t k) {
    for (size_t b = 0; b < reducer.bucket_count(); ++b)
      for (size_t q : reducer.bucket_params(b))
        if (q == k) return b;
    return reducer.bucket_count();
  };
  TrainConfig tc;
  tc.lr = 0;  // the weights stay put: every step has the same reference gradient
  tc.weight_decay = 0;
  auto opt = make_optimizer(net, tc);
  auto x = torch::randn({64, 512});
  Mlp ref;
  {
    torch::NoGradGuard g;
    for (size_t i = 0; i < ref.parameters().size(); ++i)
      ref.parameters()[i].copy_(net.parameters()[i]);
  }
  ref.forward(x).backward();
  auto mine = x.narrow(0, 32 * r, 32);

  for (const std::string how : {"first", "zero_grad", "undefined", "replaced", "accumulate"}) {
    SCOPED_TRACE(how);
    if (how == "zero_grad") zero_gradients(*opt);
    if (how == "undefined")
      for (auto& p : params) p.mutable_grad() = torch::Tensor();
    if (how == "replaced")
      for (auto& p : params) p.mutable_grad() = torch::zeros_like(p);
    if (how == "accumulate") {
      // Two micro-batches of 16, the first unsynchronised, straight into the buckets.
      zero_gradients(*opt);
      (net.forward(mine.narrow(0, 0, 16)) * 0.5).backward();
      for (size_t k = 0; k < params.size(); ++k)
        EXPECT_TRUE(in_bucket(params[k].grad(), reducer, bucket_of(k))) << "parameter " << k;
      reducer.arm();
      (net.forward(mine.narrow(0, 16, 16)) * 0.5).backward();
    } else {
      reducer.arm();
      net.forward(mine).backward();
    }
    reducer.average();
    for (size_t k = 0; k < params.size(); ++k) {
      ASSERT_TRUE(params[k].grad().defined()) << "parameter " << k;
      EXPECT_TRUE(in_bucket(params[k].grad(), reducer, bucket_of(k))) << "parameter " << k;
      EXPECT_TRUE(torch::allclose(params[k].grad(), ref.parameters()[k].grad(), 1e-4, 1e-7))
          << "parameter " << k;
    }
    opt->step();
  }
}

// A second backward between arm() and average() would add into buckets on
// the wire: average() refuses the step instead of returning wrong averages.
TEST(GradSync, SecondBackwardAfterArmIsAnError) {
  auto& comm = Runtime::get().world_comm();
  auto a = torch::ones({3}, torch::requires_grad());
  GradientReducer reducer({a}, comm);
  reducer.arm();
  auto loss = a.sum() * 2;
  loss.backward({}, /*retain_graph=*/true);
  loss.backward();
  try {
    reducer.average();
    ADD_FAILURE() << "average() accepted two backwards";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("more than one backward ran between arm() and average()"),
              std::string::npos)
        << e.what();
  }
  // The reducer is usable again for a proper step.
  a.mutable_grad().zero_();
  reducer.arm();
  (a.sum() * (comm.rank() + 1)).backward();
  reducer.average();
  EXPECT_TRUE(torch::allclose(a.grad(), torch::full({3}, 1.5f)));
}

// One rank has nothing to reduce: no bucket storage, no hooks; average() only
// gives parameters without a gradient zeros and leaves the others alone.
TEST(GradSync, OneRankKeepsNoBucketsAndLeavesGradientsAlone) {
  MPI_Comm self;
  ASSERT_EQ(MPI_Comm_split(MPI_COMM_WORLD, Runtime::get().world_comm().rank(), 0, &self),
            MPI_SUCCESS);
  {
    MpiCommunicator one(self);
    ASSERT_EQ(one.size(), 1);
    auto a = torch::ones({3}, torch::requires_grad());
    auto b = torch::ones({2}, torch::requires_grad());
    GradientReducer reducer({a, b}, one);
    ASSERT_EQ(reducer.bucket_count(), 1u);
    EXPECT_FALSE(reducer.bucket_storage(0).defined());
    reducer.arm();
    (a.sum() * 3).backward();
    const auto* before = a.grad().data_ptr<float>();
    reducer.average();
    EXPECT_EQ(a.grad().data_ptr<float>(), before);
    EXPECT_TRUE(torch::equal(a.grad(), torch::full({3}, 3.0f)));
    ASSERT_TRUE(b.grad().defined());
    EXPECT_TRUE(torch::equal(b.grad(), torch::zeros({2})));
  }
  MPI_Comm_free(&self);
}

TEST(GradSync, AllReducedCodingRateEqualsTheFullBatchOne) {
  auto& comm = Runtime::get().world_comm();
  const int r = comm.rank();
  auto z = torch::sin(torch::arange(8 * 6, torch::kFloat64).reshape({8, 6}) * 0.71);
  auto full = z.clone().requires_grad_(true);
  // 8 rows on 1 rank: p / (8 eps); 4 rows on each of 2 ranks: p / (4 * 2 eps), the same.
  auto rf = coding_rate(full, 0.05);
  rf.backward();
  auto mine = z.narrow(0, 4 * r, 4).clone().requires_grad_(true);
  auto rm = coding_rate(mine, 0.05, comm.size(), &comm);
  rm.backward();
  EXPECT_NEAR(rm.item<double>(), rf.item<double>(), 1e-10);
  // Averaging over 2 ranks of (2 x local gradient) gives the full gradient.
  EXPECT_TRUE(torch::allclose(mine.grad() / 2, full.grad().narrow(0, 4 * r, 4), 1e-9, 1e-12));
}

}  // namespace
}  // namespace m3ret::trainer
