// The encoder: shapes for images, clips and volumes, parameter counts against
// timm's ViTs, the sin-cos position embedding, input handling.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "model/config.h"
#include "model/encoder_api.h"
#include "model/vit.h"

namespace m3ret::trainer {
namespace {

VitSpec small_spec() {
  VitSpec s;
  s.width = 48;
  s.depth = 2;
  s.heads = 4;
  s.tube_t = 2;
  s.patch_h = s.patch_w = 8;
  return s;
}

TEST(Vit, ShapesForImagesClipsAndVolumes) {
  torch::manual_seed(0);
  Encoder enc(small_spec());
  // image: T = 1 is repeated to the tubelet depth -> grid 1 x 4 x 4
  EXPECT_EQ(enc.forward(torch::rand({2, 1, 1, 32, 32})).sizes(), (std::vector<int64_t>{2, 17, 48}));
  // RGB clip of 8 frames -> 4 x 4 x 4
  EXPECT_EQ(enc.forward(torch::rand({2, 3, 8, 32, 32})).sizes(), (std::vector<int64_t>{2, 65, 48}));
  // volume 16 slices, non-square, ragged edges trimmed -> 8 x 3 x 4
  EXPECT_EQ(enc.forward(torch::rand({1, 1, 16, 30, 33})).sizes(),
            (std::vector<int64_t>{1, 97, 48}));
  // odd frame count: the last frame is dropped -> 2 x 2 x 2
  EXPECT_EQ(enc.forward(torch::rand({1, 3, 5, 16, 16})).sizes(), (std::vector<int64_t>{1, 9, 48}));
  EXPECT_EQ(enc.embed(torch::rand({3, 1, 1, 16, 16})).sizes(), (std::vector<int64_t>{3, 48}));
}

TEST(Vit, ImageEqualsItsTwoFrameRepetitionAndGreyEqualsRgb) {
  torch::manual_seed(1);
  Encoder enc(small_spec());
  enc.eval();
  auto img = torch::rand({2, 1, 1, 16, 24});
  auto a = enc.forward(img);
  auto b = enc.forward(img.repeat({1, 1, 2, 1, 1}));
  auto c = enc.forward(img.expand({2, 3, 1, 16, 24}).contiguous());
  EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(a, c, 1e-5, 1e-5));
}

TEST(Vit, VisibleForwardWithAllTokensEqualsForward) {
  torch::manual_seed(2);
  Encoder enc(small_spec());
  auto x = torch::rand({2, 3, 4, 16, 16});
  auto p = enc.prepare(x);
  auto keep = torch::arange(enc.grid_of(p).tokens()).unsqueeze(0).repeat({2, 1});
  EXPECT_TRUE(torch::allclose(enc.forward(x), enc.forward_visible(p, keep), 1e-5, 1e-5));
  // A subset gives 1 + K tokens.
  auto some = torch::tensor({{0, 3, 5}, {1, 2, 7}}, torch::kInt64);
  EXPECT_EQ(enc.forward_visible(p, some).sizes(), (std::vector<int64_t>{2, 4, 48}));
}

// timm's ViT (num_classes=0) counts: patch embed 3*16*16*D + D, CLS D, learned
// position table 197*D, blocks, final norm. Ours: a 2x16x16 tubelet (adds
// 3*16*16*D) and a fixed sin-cos position embedding (no weights).
struct Ref {
  const char* preset;
  double timm_m;  // DATASETS.md
  double stem_m;  // DATASETS.md
  int64_t width;
};

TEST(Vit, ParameterCountsMatchTimmPlusTubeletStem) {
  for (const Ref& r : {Ref{"tiny", 5.52, 0.15, 192}, Ref{"small", 21.67, 0.29, 384},
                       Ref{"base", 85.80, 0.59, 768}}) {
    ModelConfig mc;
    mc.preset = r.preset;
    Encoder enc(mc.spec());
    const double ours = double(parameter_count(enc));
    const double pos_table = 197.0 * r.width;
    EXPECT_NEAR(ours, (r.timm_m + r.stem_m) * 1e6 - pos_table, 0.011e6) << r.preset;
    // Exact closed form of the architecture.
    const double D = r.width;
    const double exact = 3 * 2 * 16 * 16 * D + D + D + 12 * (12 * D * D + 13 * D) + 2 * D;
    EXPECT_EQ(ours, exact) << r.preset;
  }
}

TEST(Vit, PresetOverridesAndTubelet) {
  ModelConfig mc;
  mc.preset = "tiny";
  mc.depth = 4;
  mc.tubelet = {1, 8, 8};
  auto s = mc.spec();
  EXPECT_EQ(s.width, 192);
  EXPECT_EQ(s.depth, 4);
  EXPECT_EQ(s.heads, 3);
  EXPECT_EQ(s.tube_t, 1);
  EXPECT_EQ(s.patch_h, 8);
  mc.heads = 5;
  EXPECT_THROW(mc.spec(), config::Error);
}

// The hMLP stem: the shapes of the linear stem, a token that depends on its own
// tubelet alone (changing the pixels of one patch changes that token and no
// other, before the blocks mix them: what MAE's dropped tokens need), masked
// forward equal to the full one, and patch sides that are not multiples of 4
// refused naming the key.
TEST(Vit, HmlpStemTokensDependOnTheirOwnTubeletOnly) {
  torch::manual_seed(3);
  VitSpec s = small_spec();
  s.stem = "hmlp";
  Encoder enc(s);
  EXPECT_EQ(enc.forward(torch::rand({2, 3, 8, 32, 32})).sizes(), (std::vector<int64_t>{2, 65, 48}));
  EXPECT_EQ(enc.forward(torch::rand({1, 1, 1, 30, 33})).sizes(), (std::vector<int64_t>{1, 13, 48}));
  auto x = torch::rand({1, 1, 1, 32, 32});
  auto changed = x.clone();
  changed.index_put_({0, 0, 0, torch::indexing::Slice(8, 16), torch::indexing::Slice(16, 24)},
                     torch::rand({8, 8}));
  auto a = enc.embed_patches(enc.prepare(x)), b = enc.embed_patches(enc.prepare(changed));
  auto moved = (a - b).abs().amax(-1).squeeze(0);  // [16] tokens, row-major 4 x 4
  for (int64_t i = 0; i < 16; ++i) {
    if (i == 1 * 4 + 2)
      EXPECT_GT(moved[i].item<float>(), 1e-3) << "token " << i;
    else
      EXPECT_EQ(moved[i].item<float>(), 0.0f) << "token " << i;
  }
  auto clip = torch::rand({2, 3, 4, 16, 16});
  auto p = enc.prepare(clip);
  auto keep = torch::arange(enc.grid_of(p).tokens()).unsqueeze(0).repeat({2, 1});
  EXPECT_TRUE(torch::allclose(enc.forward_visible(p, keep), enc.forward(clip), 1e-5, 1e-5));

  ModelConfig mc;
  mc.preset = "tiny";
  mc.stem = "hmlp";
  mc.tubelet = {2, 6, 6};
  try {
    mc.spec();
    ADD_FAILURE() << "patch 6x6 with the hMLP stem was accepted";
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.stem"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[2, 6, 6]"), std::string::npos) << e.what();
  }
  mc.tubelet = {2, 8, 8};
  EXPECT_EQ(mc.spec().stem, "hmlp");
}

TEST(Vit, SinCosPositionEmbeddingIsSeparableAndBounded) {
  Grid g{3, 4, 5};
  const int64_t D = 48, dh = 16, dt = 16;
  auto e = sincos_3d(g, D).reshape({3, 4, 5, D});
  EXPECT_LE(e.abs().max().item<float>(), 1.0f + 1e-6f);
  // Each 1-D part has constant norm^2 = dim/2 (sin^2 + cos^2 per frequency).
  auto n = e.pow(2).sum(-1);
  EXPECT_TRUE(torch::allclose(n, torch::full_like(n, double(D) / 2), 1e-4, 1e-4));
  // The t part depends only on t, the h part only on h, the w part only on w.
  auto t = e.narrow(3, 0, dt), h = e.narrow(3, dt, dh), w = e.narrow(3, dt + dh, dh);
  EXPECT_TRUE(torch::equal(t, t.select(1, 0).select(1, 0).reshape({3, 1, 1, dt}).expand_as(t)));
  EXPECT_TRUE(torch::equal(h, h.select(0, 0).select(1, 0).reshape({1, 4, 1, dh}).expand_as(h)));
  EXPECT_TRUE(torch::equal(w, w.select(0, 0).select(0, 0).reshape({1, 1, 5, dh}).expand_as(w)));
  // Position 0 is [0..0, 1..1]; all positions distinct.
  auto p0 = sincos_1d(torch::zeros({1}), 8);
  EXPECT_TRUE(torch::equal(p0, torch::cat({torch::zeros({1, 4}), torch::ones({1, 4})}, 1)));
  auto flat = e.reshape({60, D});
  auto d = torch::cdist(flat, flat) + torch::eye(60) * 10;
  EXPECT_GT(d.min().item<float>(), 1e-3f);
  // A larger grid extends a smaller one (same embedding at shared positions).
  auto big = sincos_3d(Grid{3, 6, 5}, D).reshape({3, 6, 5, D});
  EXPECT_TRUE(torch::allclose(big.narrow(1, 0, 4), e));
}

TEST(Vit, EmbedBatchIsUnitNormFromUint8) {
  torch::manual_seed(3);
  Encoder enc(small_spec());
  enc.eval();
  auto batch = torch::randint(0, 256, {3, 1, 1, 16, 16}, torch::kUInt8);
  auto e = embed_batch(enc, batch);
  EXPECT_EQ(e.sizes(), (std::vector<int64_t>{3, 48}));
  EXPECT_TRUE(torch::allclose(e.norm(2, 1), torch::ones({3}), 1e-5, 1e-5));
  EXPECT_THROW(embed_batch(enc, batch.to(torch::kFloat32)), m3ret::Error);
}

}  // namespace
}  // namespace m3ret::trainer
