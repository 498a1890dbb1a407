// `m3ret model` and `m3ret export` through the binary.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/config.h"
#include "test_util.h"
#include "model/export.h"
#include "model/model_info.h"
#include "model/objective.h"
#include "model/settings.h"
#include "trainer/checkpoint.h"

namespace m3ret::trainer {
namespace {

std::string m3ret(const std::string& args, int* rc) {
  std::string out;
  *rc = testing::run_command(testing::m3ret_binary().string() + " " + args + " 2>&1", &out);
  return out;
}

TEST(ModelCli, JsonReportsParamsAndFlopsOfThePreset) {
  int rc = 0;
  auto out = m3ret("model --preset base --json", &rc);
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out);
  ModelConfig base;
  EXPECT_EQ(j["encoder_params"].get<int64_t>(), encoder_param_count(base.spec()));
  EXPECT_NEAR(j["encoder_params"].get<double>(), 86.24e6, 0.01e6);  // ViT-B/16 + tubelet stem
  EXPECT_EQ(j["tokens"], 196);
  // The published ViT-B/16 figure (35.13 GFLOPs, 16x16 stem) plus the tubelet
  // stem's second frame: 2 * 196 * 768 * 768 FLOPs more.
  EXPECT_NEAR(j["forward_gflops"].get<double>(), 35.13 + 2 * 196.0 * 768 * 768 / 1e9, 0.05);
  EXPECT_DOUBLE_EQ(j["forward_flops"].get<double>(),
                   encoder_forward_cost(base.spec(), 1, 224, 224).flops());
  EXPECT_EQ(j["tubelet"], nlohmann::json({2, 16, 16}));

  out = m3ret("model --preset tiny --input 16 112 112 --set model.depth=6 --json", &rc);
  ASSERT_EQ(rc, 0) << out;
  j = nlohmann::json::parse(out);
  EXPECT_EQ(j["width"], 192);
  EXPECT_EQ(j["depth"], 6);
  EXPECT_EQ(j["tokens"], 8 * 7 * 7);
  ModelConfig tiny;
  tiny.preset = "tiny";
  tiny.depth = 6;
  EXPECT_DOUBLE_EQ(j["forward_flops"].get<double>(),
                   encoder_forward_cost(tiny.spec(), 16, 112, 112).flops());

  out = m3ret("model --preset tiny", &rc);  // text
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("parameters"), std::string::npos) << out;

  out = m3ret("model --preset gigantic --json", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("model.preset"), std::string::npos) << out;
  out = m3ret("model --preset base --input 1 8 224", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("smaller than one patch"), std::string::npos) << out;
}

TEST(ExportCli, WritesTheCheckpointEncoderAndRefusesMissingCheckpoints) {
  testing::TempDir dir("export_cli");
  const std::string toml =
      "[model]\npreset = \"tiny\"\nwidth = 32\ndepth = 1\nheads = 2\ntubelet = [2, 8, 8]\n"
      "[mae]\ndecoder_width = 16\ndecoder_depth = 1\ndecoder_heads = 2\n";
  config::Document doc;
  doc.add_text(toml, "test.toml");
  Settings s;
  doc.bind("", s);
  torch::manual_seed(1);
  Model model(s, nullptr);
  CheckpointState state;
  state.step = 4;
  state.config_toml = toml;
  const auto ckpt = save_checkpoint(dir / "run", state, model, nullptr, 0);
  int rc = 0;
  const auto out_file = dir / "encoder.safetensors";
  auto out = m3ret("export --checkpoint " + ckpt.string() + " --out " + out_file.string(), &rc);
  ASSERT_EQ(rc, 0) << out;
  auto t = read_safetensors(out_file);
  auto expected = encoder_tensors(*model.encoder);
  ASSERT_EQ(t.size(), expected.size());
  for (size_t i = 0; i < t.size(); ++i) {
    EXPECT_EQ(t[i].first, expected[i].first);
    EXPECT_TRUE(torch::equal(t[i].second, expected[i].second)) << t[i].first;
  }
  out = m3ret("export --checkpoint " + (dir / "run").string() + " --out " +
                  (dir / "heads.safetensors").string() + " --heads",
              &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_GT(read_safetensors(dir / "heads.safetensors").size(), t.size());

  std::filesystem::create_directories(dir / "empty");
  out = m3ret("export --checkpoint " + (dir / "empty").string() + " --out " +
                  (dir / "x.safetensors").string(),
              &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find((dir / "empty").string()), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors"));
}

}  // namespace
}  // namespace m3ret::trainer
