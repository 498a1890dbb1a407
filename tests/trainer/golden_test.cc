// Golden values from PyTorch in Python (tests/trainer/golden_reference.py):
// the SimDINO coding rate and the MAE loss, values and gradients, from the same
// inputs. Skipped when no Python with torch is found.
#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "test_util.h"
#include "trainer/mae.h"
#include "trainer/simdino.h"

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
  const auto script = testing::source_dir() / "tests" / "trainer" / "golden_reference.py";
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
}

}  // namespace
}  // namespace m3ret::trainer
