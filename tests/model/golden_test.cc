// Golden values from PyTorch in Python (tests/model/golden_reference.py):
// the SimDINO coding rate and the MAE loss, values and gradients, from the same
// inputs; then the whole encoder, MAE (encoder + decoder) and SimDINO (encoder
// + head) with the same weights (exported as safetensors) and inputs: forward
// tokens, losses and the gradient of every weight. Skipped when no Python with
// torch is found.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "test_util.h"
#include "model/export.h"
#include "model/mae.h"
#include "model/simdino.h"

namespace m3ret::trainer {
namespace {

std::vector<double> to_vector(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat64).contiguous().reshape({-1});
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

TEST(Golden, CodingRateAndMaeLossMatchPyTorch) {
  const auto py = m3ret::testing::python_with("torch");
  if (py.empty()) GTEST_SKIP() << "no python3 with torch";
  std::string out;
  const auto script = testing::source_dir() / "tests" / "model" / "golden_reference.py";
  ASSERT_EQ(testing::run_command(py + " " + script.string(), &out), 0) << out;
  auto ref = nlohmann::json::parse(out.substr(out.find('{')));

  // Same inputs as the script.
  auto z = torch::empty({6, 5}, torch::kFloat64);
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 5; ++j) z[i][j] = std::sin(1.3 * i + 0.7 * j + 0.1);
  z.requires_grad_(true);
  auto r = coding_rate(z, 0.05);
  r.backward();
  EXPECT_NEAR(r.item<double>(), ref["coding_rate"].get<double>(), 1e-9);
  auto g = to_vector(z.grad());
  auto gref = ref["coding_rate_grad"].get<std::vector<double>>();
  ASSERT_EQ(g.size(), gref.size());
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], gref[i], 1e-9) << i;

  auto k = torch::arange(2 * 4 * 6, torch::kFloat32).reshape({2, 4, 6});
  auto pred = torch::cos(0.3 * k).requires_grad_(true);
  auto target = torch::sin(0.5 * k) + 0.1 * k;
  auto mask = torch::tensor({{1.f, 0.f, 1.f, 1.f}, {0.f, 1.f, 1.f, 0.f}});
  auto loss = mae_loss(pred, target, mask, /*norm_pix=*/true);
  loss.backward();
  EXPECT_NEAR(loss.item<double>(), ref["mae_loss"].get<double>(), 1e-5);
  auto mg = to_vector(pred.grad());
  auto mgref = ref["mae_grad"].get<std::vector<double>>();
  ASSERT_EQ(mg.size(), mgref.size());
  for (size_t i = 0; i < mg.size(); ++i) EXPECT_NEAR(mg[i], mgref[i], 1e-6) << i;

  // SimDINO's whole loss: both expansion views, gamma auto (1 and 2 ranks) and
  // fixed, against the reference's formula; the features as in the script.
  struct Case {
    const char* name;
    double coeff;
    bool with_teacher;
    int64_t world;
    std::optional<double> gamma;
  };
  for (const Case& c : {Case{"student_auto_1rank", 1.0, false, 1, std::nullopt},
                        Case{"teacher_auto_2ranks", 1.0, true, 2, std::nullopt},
                        Case{"student_fixed_gamma", 2.0, false, 1, 0.5}}) {
    SCOPED_TRACE(c.name);
    const auto& want = ref["simdino"][c.name];
    auto s = torch::empty({4, 6, 5}, torch::kFloat64), t = torch::empty({2, 6, 5}, torch::kFloat64);
    for (int v = 0; v < 4; ++v)
      for (int b = 0; b < 6; ++b)
        for (int k = 0; k < 5; ++k) {
          s[v][b][k] = std::sin(0.9 * v + 1.7 * b + 0.45 * k + 0.3);
          if (v < 2) t[v][b][k] = std::cos(1.1 * v + 0.6 * b + 0.8 * k);
        }
    namespace F = torch::nn::functional;
    s = F::normalize(s, F::NormalizeFuncOptions().dim(-1)).requires_grad_(true);
    t = F::normalize(t, F::NormalizeFuncOptions().dim(-1));
    SimDinoLossOptions opt;
    opt.coeff = c.coeff;
    opt.expand_with_teacher = c.with_teacher;
    opt.world = c.world;
    opt.gamma = c.gamma;
    auto sd = simdino_loss({t[0], t[1]}, {s[0], s[1], s[2], s[3]}, opt);
    EXPECT_NEAR(sd.gamma, want["gamma"].get<double>(), 1e-12);
    EXPECT_NEAR(sd.align.item<double>(), want["align"].get<double>(), 1e-9);
    EXPECT_NEAR(sd.rate.item<double>(), want["rate"].get<double>(), 1e-5);  // float32
    EXPECT_NEAR(sd.total.item<double>(), want["loss"].get<double>(), 1e-5);
    auto grad = to_vector(torch::autograd::grad({sd.total}, {s})[0]);
    auto gref = want["grad"].get<std::vector<double>>();
    ASSERT_EQ(grad.size(), gref.size());
    for (size_t i = 0; i < grad.size(); ++i) EXPECT_NEAR(grad[i], gref[i], 1e-5) << i;
  }
  // gamma = (p + N m) / (p N m): at p = 256 and 16 samples on each of 2 ranks
  // (the demo's batch) that is about 0.035, not 1.
  EXPECT_NEAR(simdino_auto_gamma(256, 16, 2), (256.0 + 32.0) / (256.0 * 32.0), 1e-15);
  EXPECT_NEAR(simdino_auto_gamma(256, 16, 2), 0.0352, 1e-4);
}

// Closeness of a C++ tensor to the Python one: |a - b| <= atol + rtol * max|b|.
void expect_close(const torch::Tensor& ours, const torch::Tensor& ref, double rtol,
                  const std::string& what) {
  ASSERT_EQ(ours.sizes(), ref.sizes()) << what;
  auto a = ours.detach().to(torch::kFloat64), b = ref.to(torch::kFloat64);
  const double scale = b.abs().max().item<double>();
  const double err = (a - b).abs().max().item<double>();
  EXPECT_LE(err, rtol * scale + 1e-7) << what << ": max error " << err << " of max " << scale;
}

// The encoder with `stem` (model.stem), the MAE decoder and the SimDINO head
// against golden_reference.py's model mode: outputs, losses and every gradient.
void check_model_against_reference(const std::string& py, const std::string& stem) {
  testing::TempDir dir("golden_model");
  torch::manual_seed(7);
  VitSpec spec;
  spec.width = 48;
  spec.depth = 2;
  spec.heads = 4;
  spec.tube_t = 2;
  spec.patch_h = spec.patch_w = 8;
  spec.layerscale = 0.1;
  spec.stem = stem;
  Encoder enc(spec);
  enc.eval();
  MaeConfig mc;
  mc.decoder_width = 32;
  mc.decoder_depth = 1;
  mc.decoder_heads = 4;
  MaeDecoder dec(spec.width, mc, 2 * 8 * 8 * 3);
  ProjectionHead head(spec.width, 64, 16);
  {
    // Non-trivial LayerNorm/LayerScale/bias values, so that their gradients matter.
    torch::NoGradGuard g;
    for (auto& p : enc.parameters()) p.add_(torch::randn_like(p) * 0.02);
    for (auto& p : dec.parameters()) p.add_(torch::randn_like(p) * 0.02);
    for (auto& p : head.parameters()) p.add_(torch::randn_like(p) * 0.02);
  }
  // Weights: the encoder under its export names, the decoder and head under theirs.
  NamedTensors weights = encoder_tensors(enc);
  std::vector<std::pair<std::string, torch::Tensor>> ours_by_name;  // export name -> our param
  {
    auto params = enc.parameters();
    for (size_t i = 0; i < params.size(); ++i)
      ours_by_name.emplace_back(weights[i].first, params[i]);
  }
  for (const auto& p : dec.named_parameters()) {
    weights.emplace_back("decoder." + p.key(), p.value().detach());
    ours_by_name.emplace_back("decoder." + p.key(), p.value());
  }
  for (const auto& p : head.named_parameters()) {
    weights.emplace_back("head." + p.key(), p.value().detach());
    ours_by_name.emplace_back("head." + p.key(), p.value());
  }
  SimDinoConfig sc;  // defaults: gamma auto, coeff 1; the v2 config's expansion views
  sc.expansion_views = "student+teacher";
  write_safetensors(dir / "weights.safetensors", weights,
                    {{"heads", "4"},
                     {"depth", "2"},
                     {"tubelet", "[2, 8, 8]"},
                     {"decoder_heads", "4"},
                     {"decoder_depth", "1"},
                     {"eps", fmt::format("{}", sc.eps)},
                     {"gamma", "auto"},
                     {"coeff", fmt::format("{}", sc.coeff)},
                     {"expa_type", "1"}});

  // Inputs: an image (T repeated), a masked clip, SimDINO's 2 global + 2 local views.
  auto enc_x = torch::rand({2, 1, 1, 16, 24});
  auto probe = torch::randn({2, 1 + 6, 48});
  auto mae_x = torch::rand({2, 3, 4, 32, 32});
  auto keep = random_tube_mask(Grid{2, 4, 4}, 0.75, {11, 12}).keep;  // [2, 8]
  std::vector<torch::Tensor> views = {
      torch::rand({2, 1, 1, 32, 32}), torch::rand({2, 1, 1, 32, 32}),
      torch::rand({2, 1, 1, 16, 16}), torch::rand({2, 1, 1, 16, 16})};
  auto teacher = torch::nn::functional::normalize(
      torch::randn({2, 2, 16}), torch::nn::functional::NormalizeFuncOptions().dim(-1));
  write_safetensors(dir / "inputs.safetensors", {{"enc_x", enc_x},
                                                 {"enc_probe", probe},
                                                 {"mae_x", mae_x},
                                                 {"mae_keep", keep},
                                                 {"sd_global0", views[0]},
                                                 {"sd_global1", views[1]},
                                                 {"sd_local0", views[2]},
                                                 {"sd_local1", views[3]},
                                                 {"sd_teacher", teacher}});
  const auto script = testing::source_dir() / "tests" / "model" / "golden_reference.py";
  std::string log;
  ASSERT_EQ(
      testing::run_command(
          py + " " + script.string() + " model " + (dir / "weights.safetensors").string() + " " +
              (dir / "inputs.safetensors").string() + " " + (dir / "ref.safetensors").string(),
          &log),
      0)
      << log;
  std::map<std::string, torch::Tensor> ref;
  for (auto& [n, t] : read_safetensors(dir / "ref.safetensors")) ref[n] = t;

  auto check_grads = [&](const torch::Tensor& loss, const std::string& tag, const char* prefix) {
    std::vector<std::string> names;
    std::vector<torch::Tensor> params;
    for (const auto& [n, p] : ours_by_name) {
      const bool is_encoder = n.rfind("decoder.", 0) != 0 && n.rfind("head.", 0) != 0;
      if (is_encoder || (prefix && n.rfind(prefix, 0) == 0)) {
        names.push_back(n);
        params.push_back(p);
      }
    }
    auto grads = torch::autograd::grad({loss}, params);
    for (size_t i = 0; i < names.size(); ++i) {
      const auto key = tag + names[i];
      if (!ref.count(key)) {
        ADD_FAILURE() << "no reference for " << key;
        continue;
      }
      expect_close(grads[i], ref[key], 2e-4, key);
    }
    return names.size();
  };

  // Encoder: output tokens and gradients of <out, probe>.
  auto out = enc.forward(enc_x);
  expect_close(out, ref["enc.out"], 1e-5, "encoder output");
  EXPECT_EQ(check_grads((out * probe).sum(), "enc.grad.", nullptr), enc.parameters().size());

  // MAE: visible tokens through the encoder, the decoder, per-patch-normalised MSE.
  auto prepared = enc.prepare(mae_x);
  const Grid grid = enc.grid_of(prepared);
  ASSERT_EQ(grid.tokens(), 32);
  auto pred = dec.forward(enc.forward_visible(prepared, keep), keep, grid);
  auto mask = torch::ones({2, grid.tokens()}).scatter_(1, keep, 0.0);
  auto mae = mae_loss(pred, patchify(prepared, 2, 8, 8), mask, true);
  expect_close(mae.reshape({1}), ref["mae.loss"], 1e-5, "MAE loss");
  check_grads(mae, "mae.grad.", "decoder.");

  // SimDINO: student = head(CLS) of every view; teacher features given.
  std::vector<torch::Tensor> student;
  for (auto& v : views) student.push_back(head.forward(enc.forward(v).select(1, 0)));
  SimDinoLossOptions opt;
  opt.eps = sc.eps;
  opt.gamma = sc.gamma.value;
  opt.coeff = sc.coeff;
  opt.expand_with_teacher = true;
  auto sd = simdino_loss({teacher[0], teacher[1]}, student, opt);
  expect_close(sd.total.reshape({1}), ref["sd.loss"], 1e-5, "SimDINO loss");
  expect_close(sd.align.reshape({1}), ref["sd.align"], 1e-5, "SimDINO alignment");
  expect_close(sd.rate.reshape({1}).to(torch::kFloat64), ref["sd.rate"], 1e-6, "SimDINO rate");
  check_grads(sd.total, "sd.grad.", "head.");
}

TEST(Golden, EncoderMaeAndSimDinoForwardLossesAndGradientsMatchPyTorch) {
  const auto py = m3ret::testing::python_with("torch, numpy");
  if (py.empty()) GTEST_SKIP() << "no python3 with torch and numpy";
  check_model_against_reference(py, "linear");
}

// The hMLP stem (model.stem = "hmlp") against the reference's, written from
// the DeiT III paper: its three convolutions, LayerNorms and GELUs, and their
// gradients under every loss.
TEST(Golden, HmlpStemEncoderMaeAndSimDinoMatchPyTorch) {
  const auto py = m3ret::testing::python_with("torch, numpy");
  if (py.empty()) GTEST_SKIP() << "no python3 with torch and numpy";
  check_model_against_reference(py, "hmlp");
}

}  // namespace
}  // namespace m3ret::trainer
