// MAE masking and loss, SimDINO coding rate and teacher, augmentations,
// and the objective factory.
#include <gtest/gtest.h>

#include <cmath>

#include <torch/torch.h>

#include "model/augment.h"
#include "model/mae.h"
#include "model/model_test_util.h"
#include "model/objective.h"
#include "model/settings.h"
#include "model/simdino.h"
#include "trainer/schedule.h"

namespace m3ret::trainer {
namespace {

std::vector<uint64_t> seeds(int n, int64_t step = 0) {
  std::vector<uint64_t> s;
  for (int i = 0; i < n; ++i) s.push_back(sample_seed(42, step, i));
  return s;
}

using testing::tiny_settings;

TEST(Mae, TubeMaskHasTheExactRatioAndIsConstantAlongTime) {
  Grid g{4, 4, 4};
  auto m = random_tube_mask(g, 0.75, seeds(3));
  EXPECT_EQ(m.keep.sizes(), (std::vector<int64_t>{3, 16}));
  EXPECT_TRUE(torch::equal(m.mask.sum(1), torch::full({3}, 48.0f)));
  auto grid = m.mask.reshape({3, 4, 16});
  for (int t = 1; t < 4; ++t) EXPECT_TRUE(torch::equal(grid.select(1, t), grid.select(1, 0)));
  // keep lists exactly the unmasked tokens, ascending.
  for (int b = 0; b < 3; ++b) {
    auto k = m.keep[b];
    EXPECT_TRUE(torch::equal(k, std::get<0>(k.sort())));
    EXPECT_EQ(m.mask[b].index_select(0, k).sum().item<float>(), 0.0f);
  }
  // Deterministic per seed, different across samples.
  auto again = random_tube_mask(g, 0.75, seeds(3));
  EXPECT_TRUE(torch::equal(m.keep, again.keep));
  EXPECT_FALSE(torch::equal(m.keep[0], m.keep[1]));
  // Image grid at 0.75 of 16: 4 kept.
  EXPECT_EQ(random_tube_mask(Grid{1, 4, 4}, 0.75, seeds(1)).keep.size(1), 4);
}

TEST(Mae, PatchifyOrder) {
  // x[b, c, t, h, w] = c + 10 t + 100 h + 1000 w; tubelet (1, 2, 2)
  auto idx = torch::arange(2 * 4 * 4, torch::kFloat32);
  auto x = torch::zeros({1, 2, 2, 4, 4});
  for (int c = 0; c < 2; ++c)
    for (int t = 0; t < 2; ++t)
      for (int h = 0; h < 4; ++h)
        for (int w = 0; w < 4; ++w) x[0][c][t][h][w] = c + 10 * t + 100 * h + 1000 * w;
  auto p = patchify(x, 1, 2, 2);  // [1, 2*2*2, 1*2*2*2]
  EXPECT_EQ(p.sizes(), (std::vector<int64_t>{1, 8, 8}));
  // token 5 = (t 1, h 0, w 1); its value (ph 1, pw 0, c 1) sits at (1*2+0)*2+1 = 5
  EXPECT_EQ(p[0][5][5].item<float>(), 1 + 10 * 1 + 100 * 1 + 1000 * 2);
}

TEST(Mae, ComputeTrainsAndReducesTheLossOnOneBatch) {
  torch::manual_seed(0);
  auto s = tiny_settings("mae");
  Model model(s, nullptr);
  TrainBatch b{torch::rand({4, 1, 1, 32, 32}), seeds(4), 0};
  model.objective->prepare(b);
  auto opt = make_optimizer(model, s.train);
  set_learning_rate(*opt, 3e-3);
  double first = 0, last = 0;
  for (int i = 0; i < 25; ++i) {
    opt->zero_grad();
    auto loss = model.objective->compute(b);
    ASSERT_TRUE(std::isfinite(loss.total.item<double>()));
    loss.total.backward();
    opt->step();
    (i == 0 ? first : last) = loss.total.item<double>();
  }
  EXPECT_LT(last, first * 0.9);
  // Clips use the video ratio.
  TrainBatch clip{torch::rand({2, 3, 4, 16, 16}), seeds(2), 0};
  model.objective->prepare(clip);
  EXPECT_TRUE(std::isfinite(model.objective->compute(clip).total.item<double>()));
}

TEST(SimDino, CodingRateEqualsTheClosedForm) {
  torch::manual_seed(1);
  for (auto [b, d] : {std::pair<int64_t, int64_t>{8, 4}, {5, 16}, {32, 32}}) {
    auto z = torch::nn::functional::normalize(torch::randn({b, d}, torch::kFloat64),
                                              torch::nn::functional::NormalizeFuncOptions().dim(1));
    const double eps = 0.05;
    // d x d form (ours, Cholesky) vs the b x b form via slogdet (Sylvester).
    auto gram = torch::eye(b, torch::kFloat64) + (double(d) / (b * eps)) * z.matmul(z.t());
    const double ref = 0.5 * std::get<1>(torch::linalg_slogdet(gram)).item<double>();
    EXPECT_NEAR(coding_rate(z, eps).item<double>(), ref, 1e-9 * std::abs(ref) + 1e-9);
  }
  // Collapsed features have a lower rate than spread ones.
  auto spread = torch::eye(8, torch::kFloat64);
  auto collapsed = torch::ones({8, 8}, torch::kFloat64) / std::sqrt(8.0);
  EXPECT_GT(coding_rate(spread, 0.05).item<double>(), coding_rate(collapsed, 0.05).item<double>());
}

TEST(SimDino, TeacherFollowsTheEmaFormulaAndTheCosineSchedule) {
  EXPECT_DOUBLE_EQ(teacher_momentum(0, 100, 0.996, 1.0), 0.996);
  EXPECT_DOUBLE_EQ(teacher_momentum(100, 100, 0.996, 1.0), 1.0);
  EXPECT_NEAR(teacher_momentum(50, 100, 0.996, 1.0), 0.998, 1e-12);
  torch::manual_seed(2);
  auto s = tiny_settings("simdino");
  auto enc = std::make_shared<Encoder>(s.model.spec());
  SimDino sd(enc, s.simdino, nullptr);
  auto teacher_w = sd.teacher_encoder().parameters()[0];
  auto student_w = enc->parameters()[0];
  EXPECT_TRUE(torch::equal(teacher_w, student_w));  // teacher starts as a copy
  EXPECT_FALSE(teacher_w.requires_grad());
  auto before = teacher_w.clone();
  {
    torch::NoGradGuard g;
    student_w.add_(1.0);
  }
  sd.update_teacher(0.9);
  EXPECT_TRUE(torch::allclose(teacher_w, 0.9 * before + 0.1 * student_w, 1e-6, 1e-6));
}

TEST(SimDino, LossHasGradientsOnTheStudentOnly) {
  torch::manual_seed(3);
  auto s = tiny_settings("simdino");
  Model model(s, nullptr);
  auto* sd = dynamic_cast<SimDino*>(model.objective.get());
  ASSERT_NE(sd, nullptr);
  TrainBatch b{torch::rand({4, 1, 1, 32, 32}), seeds(4), 0};
  model.objective->prepare(b);
  auto loss = model.objective->compute(b);
  ASSERT_TRUE(std::isfinite(loss.total.item<double>()));
  EXPECT_TRUE(loss.terms.count("simdino_align") && loss.terms.count("simdino_rate"));
  EXPECT_GE(loss.terms["simdino_align"].item<double>(), -1.0 - 1e-6);
  EXPECT_FALSE(loss.terms["simdino_rate"].requires_grad());
  loss.total.backward();
  EXPECT_TRUE(model.encoder->parameters()[0].grad().defined());
  EXPECT_TRUE(sd->head().parameters()[0].grad().defined());
  EXPECT_FALSE(sd->teacher_encoder().parameters()[0].grad().defined());
}

TEST(Objective, FactoryCombinesBothAndModelListsParametersOnce) {
  torch::manual_seed(4);
  auto s = tiny_settings("mae+simdino");
  Model model(s, nullptr);
  TrainBatch b{torch::rand({2, 3, 4, 32, 32}), seeds(2), 0};
  model.objective->prepare(b);
  auto loss = model.objective->compute(b);
  EXPECT_TRUE(loss.terms.count("mae") && loss.terms.count("simdino"));
  EXPECT_NEAR(loss.total.item<double>(),
              loss.terms["mae"].item<double>() + loss.terms["simdino"].item<double>(), 1e-4);
  // The shared encoder is listed once.
  std::set<const void*> seen;
  for (auto& p : model.parameters()) EXPECT_TRUE(seen.insert(p.data_ptr()).second);
  s.train.objective = "byol";
  EXPECT_THROW(make_objective(s, model.encoder, nullptr), config::Error);
}

TEST(Augment, MultiCropShapesAndPerSampleDeterminism) {
  auto s = tiny_settings("simdino");
  auto spec = s.model.spec();
  auto batch = torch::rand({3, 1, 8, 32, 32});
  auto v = multi_crop(batch, seeds(3), spec, s.simdino);
  ASSERT_EQ(v.global.size(), 2u);
  ASSERT_EQ(v.local.size(), 2u);
  EXPECT_EQ(v.global[0].sizes(), batch.sizes());
  EXPECT_EQ(v.local[0].sizes(), (std::vector<int64_t>{3, 1, 4, 16, 16}));
  EXPECT_GE(v.global[0].min().item<float>(), 0.0f);
  EXPECT_LE(v.global[0].max().item<float>(), 1.0f);
  EXPECT_FALSE(torch::equal(v.global[0], v.global[1]));
  // Sample 1's views do not depend on the other samples of its batch.
  auto one = multi_crop(batch.narrow(0, 1, 1), {seeds(3)[1]}, spec, s.simdino);
  EXPECT_TRUE(torch::equal(one.global[1][0], v.global[1][1]));
  EXPECT_TRUE(torch::equal(one.local[0][0], v.local[0][1]));
  // Images keep T = 1.
  EXPECT_EQ(local_view_size(1, 64, 64, spec, s.simdino), (std::vector<int64_t>{1, 32, 32}));
  EXPECT_NE(sample_seed(1, 2, 3), sample_seed(1, 2, 4));
  EXPECT_NE(sample_seed(1, 2, 3), sample_seed(1, 3, 3));
}

// prepare() gives exactly what the augmentations give: the inputs the
// objectives computed on the training thread before preparation moved to the
// loader's workers.
TEST(Objective, PrepareGivesTheAugmentationsViewsAndMasks) {
  auto s = tiny_settings("mae+simdino");
  torch::manual_seed(5);
  Model model(s, nullptr);
  for (auto shape :
       {std::vector<int64_t>{3, 1, 1, 32, 32}, std::vector<int64_t>{2, 3, 4, 32, 32}}) {
    TrainBatch b{torch::rand(shape), seeds(shape[0], 4), 4};
    auto images = b.images.clone();
    model.objective->prepare(b);
    ASSERT_TRUE(b.mae && b.simdino);
    auto view = mae_view(images, b.seeds, s.mae.crop_scale_min);
    EXPECT_TRUE(torch::equal(b.mae->view, view));
    auto prepared = model.encoder->prepare(view);
    const Grid grid = model.encoder->grid_of(prepared);
    EXPECT_TRUE(b.mae->grid == grid);
    auto mask = random_tube_mask(
        grid, grid.t == 1 ? s.mae.mask_ratio_image : s.mae.mask_ratio_video, b.seeds);
    EXPECT_TRUE(torch::equal(b.mae->keep, mask.keep));
    EXPECT_TRUE(torch::equal(b.mae->mask, mask.mask));
    auto views = multi_crop(images, b.seeds, model.encoder->spec(), s.simdino);
    EXPECT_TRUE(torch::equal(b.simdino->global, torch::cat(views.global, 0)));
    EXPECT_TRUE(torch::equal(b.simdino->local, torch::cat(views.local, 0)));
    EXPECT_TRUE(torch::equal(b.images, images)) << "prepare() leaves the images alone";
  }
}

}  // namespace
}  // namespace m3ret::trainer
