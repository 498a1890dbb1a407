// The GPU path on one GPU (train.device = "cuda"): built in every build; each
// test skips, saying why, where there is no CUDA build or no visible GPU (CI).
// bench/gpu/run.sh runs them on the GPU machine. No MPI: the binary has
// GoogleTest's own main(), so that it runs from the slim bundle
// (bench/gpu/bundle.sh) without an MPI installation.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <torch/torch.h>

#include "core/communicator.h"
#include "model/objective.h"
#include "trainer/checkpoint.h"
#include "trainer/device.h"
#include "trainer/grad_sync.h"
#include "trainer/schedule.h"
#include "trainer/trainer.h"
#include "trainer/trainer_test_util.h"

#if M3RET_WITH_CUDA
#include "core/nccl_communicator.h"
#endif

namespace m3ret::trainer {
namespace {

// Why the GPU tests cannot run here ("" when they can).
std::string no_gpu_reason() {
  if (!cuda_build()) return "CPU-only build: the GPU tests need cmake -DM3RET_CUDA=ON and a GPU";
  if (!torch::cuda::is_available())
    return "no CUDA device visible: the GPU tests run on a GPU machine (bench/gpu/run.sh)";
  return "";
}
#define REQUIRE_GPU() \
  if (const auto why = no_gpu_reason(); !why.empty()) GTEST_SKIP() << why

const torch::Device kGpu(torch::kCUDA, 0);

// One process, host memory: what the NCCL communicator broadcasts its id over.
class SingleRank : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void barrier() override {}
  void allreduce_sum(float*, size_t) override {}
  void allreduce_sum(double*, size_t) override {}
  void allreduce_sum(int64_t*, size_t) override {}
  void allreduce_max(int64_t*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  std::vector<std::string> allgather(const std::string& mine) override { return {mine}; }
};

// A fresh folder under $TMPDIR, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "m3ret-gpu-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A prepared batch of 4 RGB 32x32 images for `model`'s objective (CPU).
TrainBatch prepared_batch(const Model& model) {
  torch::manual_seed(11);
  TrainBatch b;
  b.images = torch::rand({4, 3, 1, 32, 32});
  b.seeds = {1, 2, 3, 4};
  model.objective->prepare(b);
  b.images = torch::Tensor();
  return b;
}

struct Trained {
  std::shared_ptr<Model> model;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  double loss = 0;
  std::vector<torch::Tensor> grads;  // on the CPU
};

// The same initial weights on `device`, one training step of `batch`. Adam's
// eps is raised to 1e-2 so that its update is a smooth function of the
// gradient (with eps = 1e-8 a gradient near 0 flips its update between -lr and
// lr on a rounding difference), making the weights after the step comparable.
Trained train_step(const Settings& s, const torch::Device& device, bool bf16) {
  Trained t;
  torch::manual_seed(0);
  t.model = std::make_shared<Model>(s, nullptr);
  t.model->to(device);
  t.optimizer = make_optimizer(*t.model, s.train);
  for (auto& g : t.optimizer->param_groups())
    static_cast<torch::optim::AdamWOptions&>(g.options()).eps(1e-2);
  set_learning_rate(*t.optimizer, 1e-3);
  TrainBatch b = prepared_batch(*t.model);
  pin_batch(b, device);
  batch_to_device(b, device);
  Loss loss = [&] {
    Autocast autocast(bf16);
    return t.model->objective->compute(b);
  }();
  t.loss = loss.total.item<double>();
  loss.total.backward();
  for (auto& p : trainable_parameters(*t.model)) t.grads.push_back(p.grad().cpu());
  t.optimizer->step();
  return t;
}

std::vector<torch::Tensor> cpu_params(Model& m) {
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters()) out.push_back(p.detach().cpu());
  return out;
}

void expect_close(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b,
                  double rtol, double atol, const char* what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(torch::allclose(a[i], b[i], rtol, atol))
        << what << " " << i << ": max difference " << (a[i] - b[i]).abs().max().item<double>();
}

class Gpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_build() && torch::cuda::is_available()) {
      // Exact fp32 on the GPU for the comparison (TF32 convolutions differ by ~1e-3).
      at::globalContext().setAllowTF32CuDNN(false);
      at::globalContext().setAllowTF32CuBLAS(false);
    }
  }
};

TEST_F(Gpu, Fp32StepOnCudaEqualsTheCpuStep) {
  REQUIRE_GPU();
  const auto s = testing::tiny_settings("mae+simdino");  // MAE mask and SimDINO's coding rate
  Trained cpu = train_step(s, torch::kCPU, false), gpu = train_step(s, kGpu, false);
  EXPECT_NEAR(gpu.loss, cpu.loss, 1e-4 * std::abs(cpu.loss) + 1e-6);
  expect_close(gpu.grads, cpu.grads, 1e-3, 1e-6, "gradient");
  expect_close(cpu_params(*gpu.model), cpu_params(*cpu.model), 1e-4, 1e-6, "weight after the step");
}

TEST_F(Gpu, Bf16LossIsWithinTwoPercentOfFp32) {
  REQUIRE_GPU();
  const auto s = testing::tiny_settings("mae");
  Trained fp32 = train_step(s, kGpu, false), bf16 = train_step(s, kGpu, true);
  // bfloat16 keeps 8 bits of mantissa (0.4 %); the tolerance stated in docs/training.md.
  EXPECT_NEAR(bf16.loss, fp32.loss, 0.02 * std::abs(fp32.loss));
  for (auto& g : bf16.grads) EXPECT_TRUE(torch::isfinite(g).all().item<bool>());
}

TEST_F(Gpu, CheckpointWrittenOnTheGpuResumesOnTheCpuAndBack) {
  REQUIRE_GPU();
  const auto s = testing::tiny_settings("mae");
  TempDir dir;
  Trained gpu = train_step(s, kGpu, false);
  save_checkpoint(dir.path(), {1, 1, ""}, *gpu.model, gpu.optimizer.get(), 0);
  for (const torch::Device device : {torch::Device(torch::kCPU), kGpu}) {
    SCOPED_TRACE(device.str());
    torch::manual_seed(5);  // other initial weights: the checkpoint must replace them
    auto model = std::make_shared<Model>(s, nullptr);
    model->to(device);
    auto optimizer = make_optimizer(*model, s.train);
    for (auto& g : optimizer->param_groups())
      static_cast<torch::optim::AdamWOptions&>(g.options()).eps(1e-2);
    load_checkpoint(find_latest_valid(dir.path()).value(), model.get(), optimizer.get(), false);
    for (auto& p : model->parameters()) EXPECT_EQ(p.device(), device);
    expect_close(cpu_params(*model), cpu_params(*gpu.model), 0, 0, "resumed weight");
    // A second step from the resumed optimizer state equals the GPU run's second step.
    for (auto* m : {model.get(), gpu.model.get()}) {
      auto* opt = m == model.get() ? optimizer.get() : gpu.optimizer.get();
      opt->zero_grad();
      TrainBatch b = prepared_batch(*m);
      batch_to_device(b, m->parameters().front().device());
      m->objective->compute(b).total.backward();
      opt->step();
    }
    expect_close(cpu_params(*model), cpu_params(*gpu.model), 1e-4, 1e-6, "weight after resuming");
    // Both go on from the same point for the next device.
    gpu = train_step(s, kGpu, false);
    save_checkpoint(dir.path(), {1, 1, ""}, *gpu.model, gpu.optimizer.get(), 0);
  }
}

// A checkpoint written on a GPU holds that GPU's generator state (dropout, drop path draw from
// it), and resuming on a GPU continues the same random stream; a CPU model leaves no such file.
TEST_F(Gpu, ResumingOnTheGpuContinuesItsRandomStream) {
  REQUIRE_GPU();
  const auto s = testing::tiny_settings("mae");
  TempDir dir;
  Trained gpu = train_step(s, kGpu, false);
  torch::cuda::manual_seed(11);
  const auto ck = save_checkpoint(dir.path(), {1, 1, ""}, *gpu.model, gpu.optimizer.get(), 0);
  ASSERT_TRUE(std::filesystem::exists(ck / "rng_cuda.pt"));
  const torch::Tensor expected = torch::rand({64}, torch::TensorOptions().device(kGpu)).cpu();
  torch::cuda::manual_seed(12);  // another stream: the checkpoint must bring the saved one back
  load_checkpoint(ck, gpu.model.get(), nullptr, true);
  const torch::Tensor drawn = torch::rand({64}, torch::TensorOptions().device(kGpu)).cpu();
  EXPECT_TRUE(torch::equal(drawn, expected));

  TempDir cpu_dir;
  Trained cpu = train_step(s, torch::kCPU, false);
  const auto cpu_ck =
      save_checkpoint(cpu_dir.path(), {1, 1, ""}, *cpu.model, cpu.optimizer.get(), 0);
  EXPECT_FALSE(std::filesystem::exists(cpu_ck / "rng_cuda.pt"));
}

// No host sync inside a step: with TrainOptions::check_host_syncs, any wait of the host for the
// GPU between a step's first kernel and the reading of its loss is an error (LibTorch's sync debug
// mode), and three steps of mae+simdino with two micro-batches each pass it. The check is first
// seen to catch a sync, and to end with its scope.
TEST_F(Gpu, AStepWaitsForTheGpuOnlyToReadItsLoss) {
  REQUIRE_GPU();
  const auto on_gpu = torch::TensorOptions().device(kGpu);
  {
    HostSyncCheck check(kGpu);
    EXPECT_THROW(torch::ones({1}, on_gpu).sum().item<float>(), c10::Error);
  }
  EXPECT_EQ(torch::ones({1}, on_gpu).sum().item<float>(), 1.0f);
  TempDir dir;
  testing::write_mixed_dataset(dir.path() / "shards");
  TrainOptions o;
  o.shards = dir.path() / "shards";
  o.run_dir = dir.path() / "run";
  o.settings = testing::tiny_settings("mae+simdino", /*depth=*/1, /*local_crops=*/1);
  o.settings.train.device = "cuda";
  o.settings.train.global_batch_size = 4;
  o.settings.train.grad_accum_steps = 2;
  o.settings.train.max_steps = 3;
  o.settings.train.checkpoint_every = 0;
  o.loader.workers = 1;
  o.check_host_syncs = true;
  SingleRank comm;
  EXPECT_EQ(train(o, comm).step, 3);
  std::ifstream metrics(o.run_dir / "metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(metrics, line);) ++lines;
  EXPECT_EQ(lines, 3);
}

TEST_F(Gpu, NcclCollectivesOnOneGpu) {
  REQUIRE_GPU();
#if M3RET_WITH_CUDA
  SingleRank host;
  NcclCommunicator nccl(host, 0);
  nccl.set_timeout(60);
  nccl.set_context("test");
  EXPECT_TRUE(nccl.device_memory());
  EXPECT_EQ(nccl.size(), 1);
  auto f = torch::arange(1000, torch::TensorOptions(kGpu).dtype(torch::kFloat32));
  auto d = torch::arange(1000, torch::TensorOptions(kGpu).dtype(torch::kFloat64)) * 0.5;
  auto i = torch::arange(1000, torch::TensorOptions(kGpu).dtype(torch::kInt64)) - 7;
  auto bytes = torch::arange(256, torch::TensorOptions(kGpu).dtype(torch::kUInt8));
  const auto f0 = f.clone(), d0 = d.clone(), i0 = i.clone(), b0 = bytes.clone();
  torch::cuda::synchronize();
  nccl.allreduce_sum(f.data_ptr<float>(), 1000);
  nccl.allreduce_sum(d.data_ptr<double>(), 1000);
  nccl.allreduce_sum(i.data_ptr<int64_t>(), 1000);
  nccl.allreduce_max(i.data_ptr<int64_t>(), 1000);
  nccl.broadcast(bytes.data_ptr(), 256, 0);
  EXPECT_TRUE(torch::equal(f, f0));  // the sum over one rank
  EXPECT_TRUE(torch::equal(d, d0));
  EXPECT_TRUE(torch::equal(i, i0));
  EXPECT_TRUE(torch::equal(bytes, b0));
  EXPECT_EQ(nccl.allgather("x"), std::vector<std::string>{"x"});
  // The reducer accepts GPU parameters with the NCCL communicator; a gradient
  // a parameter did not receive becomes zeros on its device.
  auto p = torch::ones({8}, torch::TensorOptions(kGpu).requires_grad(true));
  GradientReducer reducer({p}, nccl);
  reducer.average();
  ASSERT_TRUE(p.grad().defined());
  EXPECT_EQ(p.grad().device(), kGpu);
  EXPECT_EQ(p.grad().abs().sum().item<double>(), 0.0);
#endif
}

}  // namespace
}  // namespace m3ret::trainer
