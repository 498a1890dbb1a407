// Preprocessing: shapes and values for each modality's rule (docs/data.md).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <gtest/gtest.h>

#include "core/config.h"
#include "data/reader.h"
#include "data/settings.h"
#include "data_test_util.h"
#include "test_util.h"

namespace m3ret::data {
namespace {

using testutil::row;

uint8_t at(const Sample& s, int64_t c, int64_t t, int64_t y, int64_t x) {
  return s.pixels[((c * s.T + t) * s.H + y) * s.W + x];
}

using testutil::small_cfg;

TEST(DataPreprocessConfig, DefaultsAndValidation) {
  PreprocessConfig cfg;
  EXPECT_EQ(cfg.image_size, 64);
  EXPECT_EQ(cfg.video_frames, 8);
  EXPECT_EQ(cfg.volume_size, 64);
  EXPECT_EQ(cfg.volume_slices, 16);
  EXPECT_EQ(cfg.resize, "pad");
  EXPECT_NO_THROW(cfg.validate());
  cfg.ct_window = {100, -100};
  EXPECT_THROW(cfg.validate(), config::Error);
  cfg = PreprocessConfig{};
  cfg.ct_spacing = {1.0, 1.0};
  EXPECT_THROW(cfg.validate(), config::Error);
}

TEST(DataPreprocessConfig, BindsFromSettingsAndNamesBadKeys) {
  Settings s = config::load<Settings>(
      std::nullopt,
      {"preprocess.image_size=32", "preprocess.resize=crop", "synth.patients_per_class=2"});
  EXPECT_EQ(s.preprocess.image_size, 32);
  EXPECT_EQ(s.preprocess.resize, "crop");
  EXPECT_EQ(s.synth.patients_per_class, 2);
  try {
    config::load<Settings>(std::nullopt, {"preprocess.resize=stretch"});
    FAIL() << "expected config::Error";
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("resize"), std::string::npos) << e.what();
  }
  try {
    config::load<Settings>(std::nullopt, {"preprocess.ct_window=[5.0, 1.0]"});
    FAIL() << "expected config::Error";
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("ct_window"), std::string::npos) << e.what();
  }
}

// A DICOM decoding child gets the preprocessing as TOML (data/reader.cc): every setting comes
// back exactly, doubles to the last bit.
TEST(DataPreprocessConfig, RoundTripsThroughTomlExactly) {
  PreprocessConfig cfg;
  cfg.image_size = 48;
  cfg.resize = "crop";
  cfg.ct_window = {-1000.0 / 3.0, 0.1 + 0.2};
  cfg.ct_spacing = {0.123456789012345678, 1.0 / 7.0, 2.9999999999999996};
  cfg.mri_percentiles = {0.5, 99.5};
  cfg.rgb_modalities = {"ultrasound", "xray"};
  cfg.max_input_pixels = 12345678;
  cfg.decode_timeout_s = 7;
  config::Document doc;
  doc.add_text(config::to_toml(cfg), "round trip");
  PreprocessConfig back;
  doc.bind("", back);
  doc.check_all_used();
  EXPECT_EQ(config::to_toml(back), config::to_toml(cfg));
  EXPECT_EQ(back.image_size, 48);
  EXPECT_EQ(back.resize, "crop");
  EXPECT_EQ(back.ct_window, cfg.ct_window);
  EXPECT_EQ(back.ct_spacing, cfg.ct_spacing);
  EXPECT_EQ(back.mri_percentiles, cfg.mri_percentiles);
  EXPECT_EQ(back.rgb_modalities, cfg.rgb_modalities);
  EXPECT_EQ(back.max_input_pixels, 12345678);
  EXPECT_EQ(back.decode_timeout_s, 7);
}

// A CT volume of three slabs along x: -1000, 0 and 1000 HU.
TEST(DataPreprocess, CtWindowMapsHuToBytes) {
  testing::TempDir dir("prep");
  const size_t n = 30, d = 12;
  std::vector<int16_t> v(n * n * d);
  for (size_t z = 0; z < d; ++z)
    for (size_t y = 0; y < n; ++y)
      for (size_t x = 0; x < n; ++x) v[(z * n + y) * n + x] = x < 10 ? -1000 : x < 20 ? 0 : 1000;
  testutil::write_volume(dir / "ct.nii.gz", v, {n, n, d}, {2.0, 2.0, 4.0});
  auto cfg = small_cfg();
  Sample s = read_sample(row(dir / "ct.nii.gz", "ct"), dir.path(), cfg);
  ASSERT_EQ(s.C, 1);
  ASSERT_EQ(s.T, 8);
  ASSERT_EQ(s.H, 16);
  ASSERT_EQ(s.W, 16);
  ASSERT_EQ(s.pixels.size(), 8u * 16 * 16);
  // 60 mm field of view fitted into 16 voxels: x slabs of 20 mm each.
  EXPECT_EQ(at(s, 0, 4, 8, 1), 0);     // -1000 HU
  EXPECT_EQ(at(s, 0, 4, 8, 8), 128);   // 0 HU -> 127.5 rounds to 128
  EXPECT_EQ(at(s, 0, 4, 8, 14), 255);  // 1000 HU
  // A narrower window saturates 0 HU.
  cfg.ct_window = {-1000.0, 0.0};
  Sample w = read_sample(row(dir / "ct.nii.gz", "ct"), dir.path(), cfg);
  EXPECT_EQ(at(w, 0, 4, 8, 8), 255);
}

TEST(DataPreprocess, CanonicalOrientationUndoesAFlippedAxis) {
  testing::TempDir dir("prep");
  const size_t n = 20, d = 10;
  std::vector<int16_t> v(n * n * d), flipped(n * n * d);
  std::mt19937 gen(3);
  for (size_t z = 0; z < d; ++z)
    for (size_t y = 0; y < n; ++y)
      for (size_t x = 0; x < n; ++x) {
        int16_t h = static_cast<int16_t>(-1000 + (x * 70) + (y * 13) + (gen() % 50));
        v[(z * n + y) * n + x] = h;
        flipped[(z * n + y) * n + (n - 1 - x)] = h;
      }
  testutil::write_volume(dir / "a.nii.gz", v, {n, n, d}, {2, 2, 3});
  // Same anatomy stored with the x axis reversed (direction x = -1).
  testutil::write_volume(dir / "b.nrrd", flipped, {n, n, d}, {2, 2, 3},
                         {-1, 0, 0, 0, 1, 0, 0, 0, 1});
  auto cfg = small_cfg();
  Sample a = read_sample(row(dir / "a.nii.gz", "ct"), dir.path(), cfg);
  Sample b = read_sample(row(dir / "b.nrrd", "ct"), dir.path(), cfg);
  ASSERT_EQ(a.pixels.size(), b.pixels.size());
  int max_diff = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i)
    max_diff = std::max(max_diff, std::abs(a.pixels[i] - b.pixels[i]));
  EXPECT_LE(max_diff, 1);
  // And the gradient along x survives: left is darker than right.
  EXPECT_LT(at(a, 0, 4, 8, 2), at(a, 0, 4, 8, 13));
}

// One phantom in physical space (mm): a 1000 HU sphere of radius 24 mm at
// (48, 48, 48) with an 18 mm thick bar towards +x, in air, over the box [0, 96)^3.
int16_t phantom(double x, double y, double z) {
  const bool sphere = std::hypot(x - 48, y - 48, z - 48) < 24;
  const bool bar = x > 60 && x < 90 && std::abs(y - 48) < 9 && std::abs(z - 48) < 9;
  return sphere || bar ? 1000 : -1000;
}

// Samples the phantom on a grid: index (i, j, k) is at origin + D * (i, j, k) * spacing.
void write_phantom(const std::filesystem::path& path, std::array<size_t, 3> size,
                   std::array<double, 3> sp, std::array<double, 9> d,
                   std::array<double, 3> origin) {
  std::vector<int16_t> v(size[0] * size[1] * size[2]);
  size_t n = 0;
  for (size_t k = 0; k < size[2]; ++k)
    for (size_t j = 0; j < size[1]; ++j)
      for (size_t i = 0; i < size[0]; ++i) {
        const double a = i * sp[0], b = j * sp[1], c = k * sp[2];
        v[n++] = phantom(origin[0] + d[0] * a + d[1] * b + d[2] * c,
                         origin[1] + d[3] * a + d[4] * b + d[5] * c,
                         origin[2] + d[6] * a + d[7] * b + d[8] * c);
      }
  testutil::write_volume(path, v, size, sp, d, origin);
}

// The same anatomy sampled on four grids (fine, coarse, anisotropic, and
// with the x and z axes of the voxel array swapped) preprocesses to the same
// sample: the target spacing and canonical orientation decide, not the grid.
TEST(DataPreprocess, ResamplingToSpacingMakesTheGridIrrelevant) {
  testing::TempDir dir("prep");
  const std::array<double, 9> identity = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  write_phantom(dir / "fine.nii.gz", {64, 64, 64}, {1.5, 1.5, 1.5}, identity, {0.75, 0.75, 0.75});
  write_phantom(dir / "coarse.nii.gz", {32, 32, 32}, {3, 3, 3}, identity, {1.5, 1.5, 1.5});
  write_phantom(dir / "aniso.nrrd", {120, 120, 24}, {0.8, 0.8, 4}, identity, {0.4, 0.4, 2});
  write_phantom(dir / "swapped.mha", {24, 120, 120}, {4, 0.8, 0.8}, {0, 0, 1, 0, 1, 0, 1, 0, 0},
                {0.4, 0.4, 2});
  auto cfg = small_cfg();
  cfg.volume_size = 32;
  cfg.volume_slices = 32;
  cfg.ct_spacing = {1.5, 1.5, 1.5};
  const Sample ref = read_sample(row(dir / "fine.nii.gz", "ct"), dir.path(), cfg);
  // Output voxels are 3 mm (96 mm / 32); slice 16 is at z = 49.5 mm.
  EXPECT_EQ(at(ref, 0, 16, 16, 16), 255);  // sphere centre
  EXPECT_GE(at(ref, 0, 16, 16, 25), 250);  // the bar at x = 76.5 mm
  EXPECT_EQ(at(ref, 0, 16, 16, 6), 0);     // its mirror at x = 19.5 mm: air
  EXPECT_EQ(at(ref, 0, 16, 2, 16), 0);     // y = 7.5 mm: air
  for (const char* name : {"coarse.nii.gz", "aniso.nrrd", "swapped.mha"}) {
    const Sample s = read_sample(row(dir / name, "ct"), dir.path(), cfg);
    ASSERT_EQ(s.pixels.size(), ref.pixels.size()) << name;
    double sum = 0;
    for (size_t i = 0; i < s.pixels.size(); ++i) sum += std::abs(s.pixels[i] - ref.pixels[i]);
    EXPECT_LT(sum / s.pixels.size(), 6.0) << name;  // differences only at edges (partial volume)
    EXPECT_EQ(at(s, 0, 16, 16, 16), 255) << name;
    EXPECT_GE(at(s, 0, 16, 16, 25), 240) << name;
    EXPECT_LE(at(s, 0, 16, 16, 6), 5) << name;
  }
}

TEST(DataPreprocess, MriPercentilesStretchToFullRange) {
  testing::TempDir dir("prep");
  const size_t n = 24, d = 12;
  std::vector<float> v(n * n * d);
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(100.f, 900.f);
  for (auto& x : v) x = u(gen);
  testutil::write_volume(dir / "mr.mha", v, {n, n, d}, {2, 2, 2});
  auto cfg = small_cfg();
  Sample s = read_sample(row(dir / "mr.mha", "mri"), dir.path(), cfg);
  EXPECT_EQ(s.C, 1);
  EXPECT_EQ(s.T, 8);
  auto [lo, hi] = std::minmax_element(s.pixels.begin(), s.pixels.end());
  double mean = std::accumulate(s.pixels.begin(), s.pixels.end(), 0.0) / s.pixels.size();
  // Smoothing narrows the spread, but the 1-99% range maps around mid-grey.
  EXPECT_NEAR(mean, 127.5, 12.0);
  EXPECT_LT(*lo, 110);
  EXPECT_GT(*hi, 145);
}

// 60 x 30 image: left half 100, right half 200.
std::vector<uint8_t> halves(size_t w, size_t h) {
  std::vector<uint8_t> v(w * h);
  for (size_t y = 0; y < h; ++y)
    for (size_t x = 0; x < w; ++x) v[y * w + x] = x < w / 2 ? 100 : 200;
  return v;
}

TEST(DataPreprocess, PadKeepsAspectAndCropFillsTheSquare) {
  testing::TempDir dir("prep");
  testutil::write_image<uint8_t>(dir / "wide.png", halves(60, 30), 60, 30);
  auto cfg = small_cfg();
  Sample pad = read_sample(row(dir / "wide.png", "ultrasound"), dir.path(), cfg);
  ASSERT_EQ(pad.C, 1);
  ASSERT_EQ(pad.T, 1);
  ASSERT_EQ(pad.H, 32);
  ASSERT_EQ(pad.W, 32);
  EXPECT_EQ(at(pad, 0, 0, 0, 16), 0);    // padding band above
  EXPECT_EQ(at(pad, 0, 0, 31, 16), 0);   // and below
  EXPECT_EQ(at(pad, 0, 0, 16, 2), 100);  // 8-bit values are kept
  EXPECT_EQ(at(pad, 0, 0, 16, 29), 200);
  cfg.resize = "crop";
  Sample crop = read_sample(row(dir / "wide.png", "ultrasound"), dir.path(), cfg);
  EXPECT_EQ(at(crop, 0, 0, 0, 2), 100);  // no padding
  EXPECT_EQ(at(crop, 0, 0, 31, 29), 200);
}

TEST(DataPreprocess, RgbBecomesGreyForXrayAndStaysRgbForEndoscopy) {
  testing::TempDir dir("prep");
  const size_t w = 40, h = 40;
  std::vector<uint8_t> rgb(w * h * 3);
  for (size_t i = 0; i < w * h; ++i) {
    const bool left = (i % w) < w / 2;
    rgb[3 * i] = left ? 255 : 0;
    rgb[3 * i + 1] = 0;
    rgb[3 * i + 2] = left ? 0 : 255;
  }
  testutil::write_rgb(dir / "c.png", rgb, w, h);
  auto cfg = small_cfg();
  Sample grey = read_sample(row(dir / "c.png", "xray"), dir.path(), cfg);
  EXPECT_EQ(grey.C, 1);
  EXPECT_EQ(at(grey, 0, 0, 16, 2), 76);   // 0.299 * 255
  EXPECT_EQ(at(grey, 0, 0, 16, 29), 29);  // 0.114 * 255
  // An endoscopy still is an image, [3, 1, S, S], for the model (clip) and in shards (stored).
  for (const bool stored : {false, true}) {
    cfg.stored_video = stored;
    Sample endo = read_sample(row(dir / "c.png", "endoscopy"), dir.path(), cfg);
    ASSERT_EQ(endo.C, 3);
    ASSERT_EQ(endo.T, 1) << "stored " << stored;
    ASSERT_EQ(endo.pixels.size(), size_t(3 * endo.H * endo.W));
    EXPECT_EQ(at(endo, 0, 0, 16, 2), 255);
    EXPECT_EQ(at(endo, 2, 0, 16, 2), 0);
    EXPECT_EQ(at(endo, 0, 0, 16, 29), 0);
    EXPECT_EQ(at(endo, 2, 0, 16, 29), 255);
  }
  EXPECT_EQ(sample_group("endoscopy", dir / "c.png"), kEndoscopyImages);
  EXPECT_EQ(sample_group("endoscopy", dir / "v.MP4"), "endoscopy");
  EXPECT_EQ(sample_group("xray", dir / "c.png"), "xray");
  EXPECT_EQ(group_modality(kEndoscopyImages), "endoscopy");
}

// rgb_modalities keeps a 2D modality in colour ([3, 1, S, S]); grey inputs are replicated.
TEST(DataPreprocess, RgbModalitiesKeepColour) {
  testing::TempDir dir("prep");
  const size_t w = 40, h = 40;
  std::vector<uint8_t> rgb(w * h * 3), grey(w * h);
  for (size_t i = 0; i < w * h; ++i) {
    const bool left = (i % w) < w / 2;
    rgb[3 * i] = left ? 255 : 0;
    rgb[3 * i + 1] = 0;
    rgb[3 * i + 2] = left ? 0 : 255;
    grey[i] = left ? 40 : 200;
  }
  testutil::write_rgb(dir / "c.png", rgb, w, h);
  testutil::write_image<uint8_t>(dir / "g.png", grey, w, h);
  auto cfg = small_cfg();
  cfg.rgb_modalities = {"other"};
  EXPECT_NO_THROW(cfg.validate());
  Sample c = read_sample(row(dir / "c.png", "other"), dir.path(), cfg);
  ASSERT_EQ(c.C, 3);
  ASSERT_EQ(c.T, 1);
  EXPECT_EQ(at(c, 0, 0, 16, 2), 255);
  EXPECT_EQ(at(c, 1, 0, 16, 2), 0);
  EXPECT_EQ(at(c, 2, 0, 16, 29), 255);
  Sample g = read_sample(row(dir / "g.png", "other"), dir.path(), cfg);
  ASSERT_EQ(g.C, 3);
  for (int64_t ch = 0; ch < 3; ++ch) {
    EXPECT_EQ(at(g, ch, 0, 16, 2), 40);
    EXPECT_EQ(at(g, ch, 0, 16, 29), 200);
  }
  // Other modalities are untouched; only 2D grey modalities may be listed.
  EXPECT_EQ(read_sample(row(dir / "c.png", "xray"), dir.path(), cfg).C, 1);
  cfg.rgb_modalities = {"ct"};
  EXPECT_THROW(cfg.validate(), config::Error);
}

TEST(DataPreprocess, SixteenBitImagesAreMinMaxScaled) {
  testing::TempDir dir("prep");
  std::vector<uint16_t> v(40 * 40);
  for (size_t i = 0; i < v.size(); ++i) v[i] = (i % 40) < 20 ? 1000 : 3000;
  testutil::write_image<uint16_t>(dir / "x.tif", v, 40, 40);
  Sample s = read_sample(row(dir / "x.tif", "xray"), dir.path(), small_cfg());
  EXPECT_EQ(at(s, 0, 0, 16, 2), 0);
  EXPECT_EQ(at(s, 0, 0, 16, 29), 255);
}

}  // namespace
}  // namespace m3ret::data
