// The SSL augmentations (model/augment.h) on their own: random resized crops
// take a box of the input (in H, W and T), flips mirror W half of the time,
// intensity jitter is an affine map of the intensities applied 80% of the
// time, rotation turns a view about its centre within its angle range, and the SimDINO multi-crop set has 2 global views at the input size
// and N smaller local views, in 2D (T = 1 kept) and in 3D/time (T shrunk).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "model/augment.h"
#include "model/config.h"

namespace m3ret::trainer {
namespace {

// x[c, t, h, w] = value of the coordinate along `dim` (1 = T, 2 = H, 3 = W).
torch::Tensor ramp(int64_t C, int64_t T, int64_t H, int64_t W, int dim) {
  const int64_t sizes[4] = {C, T, H, W};
  std::vector<int64_t> view = {1, 1, 1, 1};
  view[dim] = sizes[dim];
  return torch::arange(sizes[dim], torch::kFloat32).view(view).expand({C, T, H, W}).contiguous();
}

TEST(Augment, RandomResizedCropTakesABoxOfTheInputInSpaceAndTime) {
  for (uint64_t seed = 0; seed < 40; ++seed) {
    for (int dim : {1, 2, 3}) {
      auto x = ramp(1, 16, 32, 32, dim);
      auto gen = make_generator(seed);
      auto y = random_resized_crop(x, 8, 16, 16, 0.1, 0.4, gen);
      ASSERT_EQ(y.sizes(), (std::vector<int64_t>{1, 8, 16, 16}));
      // A linear ramp stays a ramp: non-decreasing along its axis, constant
      // along the others, inside the input's range, narrower than the input.
      auto d = y.diff(1, dim);
      EXPECT_GE(d.min().item<float>(), -1e-4) << "dim " << dim;
      const float lo = y.min().item<float>(), hi = y.max().item<float>();
      EXPECT_GE(lo, -1e-4);
      EXPECT_LE(hi, float(x.size(dim) - 1) + 1e-4);
      const double span = hi - lo, full = double(x.size(dim) - 1);
      // Area in [0.1, 0.4] with aspect in [3/4, 4/3]: each side at most
      // sqrt(0.4 * 4/3) = 0.73 of the input; T a fraction in [sqrt(.1), sqrt(.4)].
      EXPECT_LT(span, 0.8 * full) << "dim " << dim << " seed " << seed;
      EXPECT_GT(span, 0.15 * full) << "dim " << dim << " seed " << seed;
      for (int other : {1, 2, 3}) {
        if (other != dim) {
          EXPECT_LT(y.diff(1, other).abs().max().item<float>(), 1e-4);
        }
      }
    }
  }
  // The same seed gives the same crop; another seed another one.
  auto x = torch::rand({3, 4, 24, 24});
  auto g1 = make_generator(7), g2 = make_generator(7), g3 = make_generator(8);
  auto a = random_resized_crop(x, 4, 24, 24, 0.2, 1.0, g1);
  EXPECT_TRUE(torch::equal(a, random_resized_crop(x, 4, 24, 24, 0.2, 1.0, g2)));
  EXPECT_FALSE(torch::equal(a, random_resized_crop(x, 4, 24, 24, 0.2, 1.0, g3)));
}

TEST(Augment, FlipMirrorsWidthHalfOfTheTime) {
  auto x = torch::rand({1, 2, 8, 8});
  int flipped = 0;
  for (uint64_t seed = 0; seed < 400; ++seed) {
    auto gen = make_generator(seed);
    auto y = random_flip(x, gen);
    if (torch::equal(y, x.flip({3}))) {
      ++flipped;
    } else {
      ASSERT_TRUE(torch::equal(y, x));
    }
  }
  EXPECT_GT(flipped, 150);
  EXPECT_LT(flipped, 250);
}

// A Gaussian blob off the centre of a square view: rotating about the centre
// keeps its distance to the centre and its mass, moves it by an angle within
// [-max, max], the same for every channel and frame; max 0 returns the input
// and draws nothing from the generator.
TEST(Augment, RotateTurnsTheViewAboutItsCentreByABoundedAngle) {
  const int64_t N = 41;
  const double c = (N - 1) / 2.0, r0 = 10;
  auto yy = torch::arange(N, torch::kFloat64).view({N, 1}).expand({N, N});
  auto xx = torch::arange(N, torch::kFloat64).view({1, N}).expand({N, N});
  auto blob = torch::exp(-((xx - (c + r0)).pow(2) + (yy - c).pow(2)) / (2 * 2.0 * 2.0));
  auto x = torch::stack({torch::stack({blob, blob * 0.5}), torch::stack({blob * 0.25, blob})})
               .to(torch::kFloat32);  // [C=2, T=2, N, N]
  const double max_deg = 60;
  double lo = 1e9, hi = -1e9;
  for (uint64_t seed = 0; seed < 60; ++seed) {
    auto gen = make_generator(seed);
    auto y = random_rotate(x, max_deg, gen).to(torch::kFloat64);
    ASSERT_EQ(y.sizes(), x.sizes());
    std::vector<double> angles;
    for (int64_t ch = 0; ch < 2; ++ch) {
      for (int64_t t = 0; t < 2; ++t) {
        auto img = y[ch][t];
        const double m = img.sum().item<double>(),
                     m0 = x[ch][t].to(torch::kFloat64).sum().item<double>();
        EXPECT_NEAR(m, m0, 0.02 * m0);
        const double cx = (img * xx).sum().item<double>() / m - c,
                     cy = (img * yy).sum().item<double>() / m - c;
        EXPECT_NEAR(std::hypot(cx, cy), r0, 0.3) << "seed " << seed;
        angles.push_back(std::atan2(cy, cx) * 180 / M_PI);
      }
    }
    for (double a : angles) EXPECT_NEAR(a, angles[0], 0.5) << "seed " << seed;
    EXPECT_LE(std::abs(angles[0]), max_deg + 0.5) << "seed " << seed;
    lo = std::min(lo, angles[0]), hi = std::max(hi, angles[0]);
  }
  EXPECT_LT(lo, -0.6 * max_deg);  // both directions, most of the range
  EXPECT_GT(hi, 0.6 * max_deg);
  auto g1 = make_generator(5), g2 = make_generator(5);
  EXPECT_TRUE(torch::equal(random_rotate(x, 0, g1), x));
  EXPECT_TRUE(torch::equal(random_resized_crop(x, 2, 20, 20, 0.2, 1.0, g1),  // nothing was drawn
                           random_resized_crop(x, 2, 20, 20, 0.2, 1.0, g2)));
}

TEST(Augment, IntensityJitterIsAnAffineMapAppliedEightyPercentOfTheTime) {
  // Values in [0.4, 0.6]: with strength 0.4 nothing reaches the clamp.
  auto x = 0.4 + 0.2 * torch::rand({1, 3, 8, 8}, torch::kFloat64);
  int changed = 0;
  for (uint64_t seed = 0; seed < 400; ++seed) {
    auto gen = make_generator(seed);
    auto y = intensity_jitter(x, gen, 0.4);
    if (torch::equal(y, x)) continue;
    ++changed;
    // y = a * x + b for every pixel, a = brightness * contrast in [0.36, 1.96].
    auto xf = x.flatten(), yf = y.flatten();
    const int64_t i = xf.argmin().item<int64_t>(), j = xf.argmax().item<int64_t>();
    const double a = (yf[j] - yf[i]).item<double>() / (xf[j] - xf[i]).item<double>();
    const double b = yf[i].item<double>() - a * xf[i].item<double>();
    EXPECT_LT((yf - (a * xf + b)).abs().max().item<double>(), 1e-9);
    EXPECT_GE(a, 0.36 - 1e-9);
    EXPECT_LE(a, 1.96 + 1e-9);
    EXPECT_GE(y.min().item<double>(), 0.0);
    EXPECT_LE(y.max().item<double>(), 1.0);
  }
  EXPECT_GT(changed, 280);
  EXPECT_LT(changed, 360);
}

TEST(Augment, MultiCropIn2DAndInTime) {
  VitSpec vit;
  vit.tube_t = 2;
  vit.patch_h = vit.patch_w = 8;
  SimDinoConfig cfg;
  cfg.local_crops = 3;
  std::vector<uint64_t> seeds = {sample_seed(1, 0, 0), sample_seed(1, 0, 1)};
  // 3D/time (an RGB clip): local views smaller in T, H and W.
  auto clip = torch::rand({2, 3, 8, 32, 32});
  auto v = multi_crop(clip, seeds, vit, cfg);
  ASSERT_EQ(v.global.size(), 2u);
  ASSERT_EQ(v.local.size(), 3u);
  for (const auto& g : v.global) EXPECT_EQ(g.sizes(), clip.sizes());
  for (const auto& l : v.local) EXPECT_EQ(l.sizes(), (std::vector<int64_t>{2, 3, 4, 16, 16}));
  EXPECT_FALSE(torch::equal(v.local[0], v.local[1]));
  // 2D (grey images): T = 1 stays 1.
  auto images = torch::rand({2, 1, 1, 32, 32});
  auto w = multi_crop(images, seeds, vit, cfg);
  for (const auto& g : w.global) EXPECT_EQ(g.sizes(), images.sizes());
  for (const auto& l : w.local) EXPECT_EQ(l.sizes(), (std::vector<int64_t>{2, 1, 1, 16, 16}));
  for (const auto& t : {w.global[0], w.local[2]}) {
    EXPECT_GE(t.min().item<float>(), 0.0f);
    EXPECT_LE(t.max().item<float>(), 1.0f);
  }
  // Replaying the seeds gives the same views (resumed and N-rank runs agree).
  auto again = multi_crop(images, seeds, vit, cfg);
  EXPECT_TRUE(torch::equal(again.local[1], w.local[1]));
}

}  // namespace
}  // namespace m3ret::trainer
