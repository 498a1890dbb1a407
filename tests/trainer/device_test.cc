// train.device / train.precision on a machine without a GPU (what CI sees):
// the keys, and the one-line errors for "cuda" where it cannot run.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "core/communicator.h"
#include "core/config.h"
#include "core/runtime.h"
#include "eval/embed.h"
#include "test_util.h"
#include "model/config.h"
#include "model/device.h"
#include "trainer/trainer.h"

namespace m3ret::trainer {
namespace {

namespace stdfs = std::filesystem;

bool gpu_visible() { return cuda_build() && torch::cuda::is_available(); }

// What "cuda" without a GPU says: the build cannot, or no device is visible.
std::string expected_reason() { return cuda_build() ? "no CUDA device is visible" : "CPU-only"; }

// `m3ret ARGS` outside this test's MPI singleton; output and exit code.
std::string m3ret(const std::string& args, int* rc) {
  std::string out;
  *rc = testing::run_command(
      "for v in $(env | grep -o '^\\(OMPI\\|PMIX\\)_[^=]*'); do unset $v; done; " +
          testing::m3ret_binary().string() + " " + args + " 2>&1",
      &out);
  return out;
}

TEST(Device, KeysDefaultToCpuFp32AndAreListedByConfig) {
  TrainConfig cfg;
  EXPECT_EQ(cfg.device, "cpu");
  EXPECT_EQ(cfg.precision, "fp32");
  EXPECT_NO_THROW(cfg.validate());
  int rc = 0;
  const auto out = m3ret("config --keys", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("train.device"), std::string::npos) << out;
  EXPECT_NE(out.find("train.precision"), std::string::npos) << out;
  EXPECT_EQ(resolve_device("cpu", 0), torch::Device(torch::kCPU));
}

TEST(Device, Bf16OnTheCpuIsAConfigErrorNamingTheKey) {
  TrainConfig cfg;
  cfg.precision = "bf16";
  try {
    cfg.validate();
    FAIL() << "bf16 on the CPU was accepted";
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.precision"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("train.device"), std::string::npos) << e.what();
  }
  int rc = 0;
  auto out = m3ret("config --set 'train.precision=\"bf16\"'", &rc);
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("train.precision"), std::string::npos) << out;
  out = m3ret("config --set 'train.device=\"tpu\"'", &rc);
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("train.device"), std::string::npos) << out;
}

TEST(Device, CudaWithoutAGpuIsAConfigErrorSayingWhy) {
  if (gpu_visible()) GTEST_SKIP() << "a GPU is visible: tests/gpu/ covers training on it";
  try {
    resolve_device("cuda", 0);
    FAIL() << "cuda was accepted without a GPU";
  } catch (const config::Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("train.device: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(expected_reason()), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Device, TrainOnCudaWithoutAGpuStopsBeforeAnyWork) {
  if (gpu_visible()) GTEST_SKIP() << "a GPU is visible: tests/gpu/ covers training on it";
  testing::TempDir dir("device_train");
  // The shards folder is empty: reading it would fail with another error.
  stdfs::create_directories(dir / "shards");
  TrainOptions o;
  o.shards = dir / "shards";
  o.run_dir = dir / "run";
  o.settings.train.device = "cuda";
  try {
    train(o, Runtime::get().world_comm());
    FAIL() << "train() on cuda without a GPU did not throw";
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.device"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(stdfs::exists(dir / "run")) << "train() did work before refusing the device";

  // Through the binary: exit 2 (a usage error) and one line naming the key and why.
  int rc = 0;
  const auto out = m3ret("train --shards " + (dir / "shards").string() + " --run-dir " +
                             (dir / "cli").string() + " --set 'train.device=\"cuda\"'",
                         &rc);
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("train.device: \"cuda\""), std::string::npos) << out;
  EXPECT_NE(out.find(expected_reason()), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_FALSE(stdfs::exists(dir / "cli" / "checkpoints")) << out;
  EXPECT_FALSE(stdfs::exists(dir / "cli" / "metrics.jsonl")) << out;
}

TEST(Device, EmbedOnCudaWithoutAGpuStopsBeforeAnyWork) {
  if (gpu_visible()) GTEST_SKIP() << "a GPU is visible: tests/gpu/ covers the GPU";
  testing::TempDir dir("device_embed");
  // The shards folder is empty: reading it would fail with another error.
  stdfs::create_directories(dir / "shards");
  eval::EmbedOptions o;
  o.checkpoint = dir / "run";
  o.shards = dir / "shards";
  o.out = dir / "embeddings.h5";
  o.device = "cuda";
  try {
    eval::embed(o, Runtime::get().world_comm());
    FAIL() << "embed() on cuda without a GPU did not throw";
  } catch (const config::Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("--device: \"cuda\"", 0), 0u) << msg;
    EXPECT_NE(msg.find(expected_reason()), std::string::npos) << msg;
  }
  EXPECT_FALSE(stdfs::exists(o.out));

  // Through the binary: `m3ret embed --device cuda` is a usage error (exit 2), one line.
  stdfs::create_directories(dir / "run");  // empty: loading it would fail with another error
  int rc = 0;
  const auto out =
      m3ret("embed --checkpoint " + (dir / "run").string() + " --shards " +
                (dir / "shards").string() + " --out " + o.out.string() + " --device cuda",
            &rc);
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("--device: \"cuda\""), std::string::npos) << out;
  EXPECT_NE(out.find(expected_reason()), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_FALSE(stdfs::exists(o.out)) << out;
}

}  // namespace
}  // namespace m3ret::trainer
