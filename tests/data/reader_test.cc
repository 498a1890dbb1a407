// Readers: every supported format, written by the test through ITK or FFmpeg,
// read back into the unified sample.
#include <algorithm>
#include <cmath>
#include <future>
#include <numeric>

#include <gtest/gtest.h>
#include <itkGDCMImageIO.h>
#include <itkImageFileReader.h>
#include <itkMetaDataObject.h>

#include "core/fs.h"
#include "data/reader.h"
#include "data/video_writer.h"
#include "data_test_util.h"
#include "test_util.h"

namespace m3ret::data {
namespace {

namespace stdfs = std::filesystem;
using testutil::row;
using testutil::small_cfg;

uint8_t at(const Sample& s, int64_t c, int64_t t, int64_t y, int64_t x) {
  return s.pixels[((c * s.T + t) * s.H + y) * s.W + x];
}

double plane_mean(const Sample& s, int64_t c, int64_t t) {
  double sum = 0;
  for (int64_t y = 0; y < s.H; ++y)
    for (int64_t x = 0; x < s.W; ++x) sum += at(s, c, t, y, x);
  return sum / (s.H * s.W);
}

// A 2D gradient with a bright square: not constant, easy to check.
std::vector<uint8_t> pattern(size_t w, size_t h) {
  std::vector<uint8_t> v(w * h);
  for (size_t y = 0; y < h; ++y)
    for (size_t x = 0; x < w; ++x)
      v[y * w + x] = (x > w / 4 && x < w / 2 && y > h / 4 && y < h / 2)
                         ? 250
                         : static_cast<uint8_t>(x * 100 / w);
  return v;
}

TEST(DataReader, FillsMetadataFromTheRow) {
  testing::TempDir dir("reader");
  stdfs::create_directories(dir / "sub");
  testutil::write_image<uint8_t>(dir / "sub/a.png", pattern(40, 40), 40, 40);
  ManifestRow r = row(dir / "sub/a.png", "ultrasound");
  r.labels = {"benign", "calcified"};
  r.group = "patient-7";
  r.split = "test";
  Sample s = read_sample(r, dir.path(), small_cfg());
  EXPECT_EQ(s.id, "sub/a.png");
  EXPECT_EQ(s.modality, "ultrasound");
  EXPECT_EQ(s.labels, r.labels);
  EXPECT_EQ(s.group, "patient-7");
  EXPECT_EQ(s.split, "test");
  EXPECT_EQ(s.source, (dir / "sub/a.png").string());
  // Relative paths resolve against the manifest folder.
  ManifestRow rel = row("sub/a.png", "ultrasound");
  EXPECT_EQ(read_sample(rel, dir.path(), small_cfg()).pixels, s.pixels);
}

TEST(DataReader, TwoDimensionalFormats) {
  testing::TempDir dir("reader");
  auto v = pattern(48, 40);
  for (const char* name : {"a.png", "a.bmp", "a.tif", "a.jpg"}) {
    testutil::write_image<uint8_t>(dir / name, v, 48, 40);
    Sample s = read_sample(row(dir / name, "xray"), dir.path(), small_cfg());
    EXPECT_EQ(s.C, 1) << name;
    EXPECT_EQ(s.T, 1) << name;
    EXPECT_EQ(s.H, 32) << name;
    EXPECT_EQ(s.W, 32) << name;
    // Bright square at x in (12, 24), y in (10, 20) of 48 x 40 -> scale 32/48,
    // padded by 3 rows: centre (12, 13) of the output.
    EXPECT_GT(at(s, 0, 0, 13, 12), 200) << name;
    EXPECT_EQ(at(s, 0, 0, 0, 16), 0) << name;  // padding row
  }
}

TEST(DataReader, DicomFileAndModalityTag) {
  testing::TempDir dir("reader");
  std::vector<uint16_t> v(50 * 50);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint16_t>(500 + (i % 50) * 60);
  testutil::write_dicom(dir / "x.dcm", v, 50, 50, "DX");
  Sample s = read_sample(row(dir / "x.dcm", "xray"), dir.path(), small_cfg());
  EXPECT_EQ(s.C, 1);
  EXPECT_EQ(s.H, 32);
  EXPECT_LT(at(s, 0, 0, 16, 0), 10);    // min -> 0
  EXPECT_GT(at(s, 0, 0, 16, 31), 245);  // max -> 255
  EXPECT_LT(at(s, 0, 0, 16, 10), at(s, 0, 0, 16, 20));
}

TEST(DataReader, DicomSeriesFolderAppliesRescaleAndSortsByPosition) {
  testing::TempDir dir("reader");
  const size_t n = 24, d = 10;
  // Slices 0..4 hold air (-1000 HU, stored as 24 with intercept -1024),
  // slices 5..9 hold 1000 HU (stored 2024). Without the rescale the air
  // slices would read as 24 -> 131.
  std::vector<int16_t> hu(n * n * d);
  for (size_t z = 0; z < d; ++z)
    for (size_t i = 0; i < n * n; ++i) hu[z * n * n + i] = z < d / 2 ? -1000 : 1000;
  testutil::write_ct_series(dir / "series", hu, {n, n, d}, -1024.0);
  auto cfg = small_cfg();
  cfg.resize = "crop";
  Sample s = read_sample(row(dir / "series", "ct"), dir.path(), cfg);
  ASSERT_EQ(s.C, 1);
  ASSERT_EQ(s.T, 8);
  ASSERT_EQ(s.H, 16);
  EXPECT_EQ(s.id, "series");
  // Inferior slices (low z) are -1000 HU -> 0, superior ones 1000 HU -> 255.
  EXPECT_EQ(at(s, 0, 0, 8, 8), 0);
  EXPECT_EQ(at(s, 0, 7, 8, 8), 255);
}

// Frame k of a 16-frame clip is a flat grey of 20 + 12 k with a white marker
// square at the top left, so each sampled frame is identifiable.
std::vector<uint8_t> numbered_clip(int64_t frames, int64_t h, int64_t w) {
  std::vector<uint8_t> rgb(static_cast<size_t>(frames * h * w * 3));
  for (int64_t t = 0; t < frames; ++t)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c)
          rgb[((t * h + y) * w + x) * 3 + c] =
              (x < w / 4 && y < h / 4) ? 250 : static_cast<uint8_t>(20 + 12 * t);
  return rgb;
}

void check_sampling(const stdfs::path& file, const PreprocessConfig& cfg) {
  Sample s = read_sample(row(file, "endoscopy"), file.parent_path(), cfg);
  ASSERT_EQ(s.C, 3) << file;
  ASSERT_EQ(s.T, 4) << file;
  ASSERT_EQ(s.H, 32) << file;
  ASSERT_EQ(s.W, 32) << file;
  // 16 frames sampled at floor((i + 0.5) * 16 / 4) = 2, 6, 10, 14.
  const int expected_frame[4] = {2, 6, 10, 14};
  for (int t = 0; t < 4; ++t) {
    const double grey = 20 + 12 * expected_frame[t];
    EXPECT_NEAR(at(s, 0, t, 20, 24), grey, 6) << file << " frame " << t;
    EXPECT_NEAR(at(s, 1, t, 20, 24), grey, 6) << file << " frame " << t;
  }
}

TEST(DataReader, Mp4VideoIsSampledUniformly) {
  testing::TempDir dir("reader");
  video::write(dir / "v.mp4", numbered_clip(16, 48, 64), 16, 48, 64);
  auto cfg = small_cfg();
  cfg.resize = "crop";  // the frame fills the square: no black bars
  check_sampling(dir / "v.mp4", cfg);
  // Pad mode: 64 x 48 -> 32 x 24 with 4 black rows above and below.
  cfg.resize = "pad";
  Sample s = read_sample(row(dir / "v.mp4", "endoscopy"), dir.path(), cfg);
  EXPECT_LT(at(s, 0, 3, 1, 16), 5);
  EXPECT_GT(at(s, 0, 3, 16, 16), 150);
}

TEST(DataReader, OtherContainersAndCodecs) {
  testing::TempDir dir("reader");
  auto cfg = small_cfg();
  cfg.resize = "crop";
  auto clip = numbered_clip(16, 48, 64);
  video::write(dir / "v.avi", clip, 16, 48, 64, 10, "mpeg4");
  check_sampling(dir / "v.avi", cfg);
  video::write(dir / "v.mkv", clip, 16, 48, 64, 10, "mjpeg");
  check_sampling(dir / "v.mkv", cfg);
}

TEST(DataReader, WebmMovAndMoreCodecs) {
  testing::TempDir dir("reader");
  auto cfg = small_cfg();
  cfg.resize = "crop";
  auto clip = numbered_clip(16, 48, 64);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"vp8.webm", "libvpx"},     {"vp9.webm", "libvpx-vp9"}, {"h264.mov", "libx264"},
      {"mpeg4.mov", "mpeg4"},     {"ffv1.mkv", "ffv1"},       {"mjpeg.avi", "mjpeg"},
      {"mpeg2.mpg", "mpeg2video"}};
  for (const auto& [name, codec] : cases) {
    video::write(dir / name, clip, 16, 48, 64, 10, codec);
    check_sampling(dir / name, cfg);
  }
}

// Frames 0-7 come 10 ms apart, frames 8-15 200 ms apart: sampling is uniform
// in time, so the 4 samples all fall in the slow second half.
TEST(DataReader, VariableFrameRateIsSampledUniformlyInTime) {
  testing::TempDir dir("reader");
  video::WriteOptions opt;
  for (int64_t k = 0; k < 8; ++k) opt.pts_ms.push_back(10 * k);
  for (int64_t k = 0; k < 8; ++k) opt.pts_ms.push_back(100 + 200 * k);
  auto cfg = small_cfg();
  cfg.resize = "crop";
  // Span [0, 1700) ms: t_i = 212.5, 637.5, 1062.5, 1487.5 -> frames 8, 10, 12, 14.
  const int expected[4] = {8, 10, 12, 14};
  for (const auto& [name, codec] : std::vector<std::pair<std::string, std::string>>{
           {"vfr.mkv", "ffv1"}, {"vfr.mp4", "libx264"}}) {
    opt.codec = codec;
    video::write(dir / name, numbered_clip(16, 48, 64), 16, 48, 64, opt);
    Sample s = read_sample(row(dir / name, "endoscopy"), dir.path(), cfg);
    for (int t = 0; t < 4; ++t) {
      EXPECT_NEAR(at(s, 0, t, 20, 24), 20 + 12 * expected[t], 6) << name << " frame " << t;
    }
  }
}

TEST(DataReader, OddFrameSizes) {
  testing::TempDir dir("reader");
  // 63 x 47 frames: the left third bright, the rest dark.
  const int64_t w = 63, h = 47, frames = 6;
  std::vector<uint8_t> rgb(static_cast<size_t>(frames * h * w * 3));
  for (int64_t t = 0; t < frames; ++t)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c) rgb[((t * h + y) * w + x) * 3 + c] = x < w / 3 ? 230 : 30;
  auto cfg = small_cfg();  // pad: 63 x 47 -> 32 x 24, 4 black rows above and below
  for (const auto& [name, codec] : std::vector<std::pair<std::string, std::string>>{
           {"odd.mkv", "ffv1"}, {"odd.mp4", "libx264"}}) {
    video::write(dir / name, rgb, frames, h, w, 10, codec);
    Sample s = read_sample(row(dir / name, "endoscopy"), dir.path(), cfg);
    EXPECT_LT(at(s, 0, 0, 1, 16), 5) << name;         // padding
    EXPECT_NEAR(at(s, 0, 0, 16, 3), 230, 8) << name;  // bright left third
    EXPECT_NEAR(at(s, 0, 0, 16, 28), 30, 8) << name;  // dark right
  }
}

TEST(DataReader, ShortClipsRepeatFrames) {
  testing::TempDir dir("reader");
  video::write(dir / "short.mp4", numbered_clip(2, 32, 32), 2, 32, 32);
  Sample s = read_sample(row(dir / "short.mp4", "endoscopy"), dir.path(), small_cfg());
  ASSERT_EQ(s.T, 4);
  // floor((i + 0.5) * 2 / 4) = 0, 0, 1, 1
  EXPECT_NEAR(plane_mean(s, 0, 0), plane_mean(s, 0, 1), 1.0);
  EXPECT_NEAR(plane_mean(s, 0, 2), plane_mean(s, 0, 3), 1.0);
  EXPECT_GT(plane_mean(s, 0, 2) - plane_mean(s, 0, 0), 6.0);
}

TEST(DataReader, ConcurrentReadsMatchSequentialOnes) {
  testing::TempDir dir("reader");
  std::vector<ManifestRow> rows;
  for (int i = 0; i < 4; ++i) {
    auto v = pattern(40 + i * 8, 40);
    auto p = dir / ("img" + std::to_string(i) + ".png");
    testutil::write_image<uint8_t>(p, v, 40 + i * 8, 40);
    rows.push_back(row(p, "xray"));
    std::vector<int16_t> vol(20 * 20 * 10);
    for (size_t k = 0; k < vol.size(); ++k)
      vol[k] = static_cast<int16_t>(-1000 + (k * (7 + i)) % 2000);
    auto vp = dir / ("vol" + std::to_string(i) + ".nii.gz");
    testutil::write_volume(vp, vol, {20, 20, 10}, {2, 2, 3});
    rows.push_back(row(vp, "ct"));
  }
  video::write(dir / "v.mp4", numbered_clip(16, 48, 64), 16, 48, 64);
  rows.push_back(row(dir / "v.mp4", "endoscopy"));
  auto cfg = small_cfg();
  std::vector<Sample> sequential;
  for (const auto& r : rows) sequential.push_back(read_sample(r, dir.path(), cfg));
  std::vector<std::future<Sample>> futures;
  for (int rep = 0; rep < 2; ++rep)
    for (const auto& r : rows)
      futures.push_back(
          std::async(std::launch::async, [&, r] { return read_sample(r, dir.path(), cfg); }));
  for (size_t i = 0; i < futures.size(); ++i) {
    EXPECT_EQ(futures[i].get().pixels, sequential[i % rows.size()].pixels)
        << rows[i % rows.size()].path;
  }
}

// The same frames give the same file whatever the process encoded before or
// alongside: `m3ret synth` relies on it for a reproducible dataset. (With
// libx264 at CRF, 5-10 of 60 such clips changed with the order of encoding.)
TEST(VideoWriter, SameFramesGiveTheSameBytesInAnyOrderAndInParallel) {
  testing::TempDir dir("writer");
  constexpr int kClips = 24;
  constexpr int64_t F = 8, H = 48, W = 64;
  std::vector<std::vector<uint8_t>> clips(kClips);
  for (int k = 0; k < kClips; ++k) {
    clips[k].resize(static_cast<size_t>(F * H * W * 3));
    uint64_t state = 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(k + 1);
    for (int64_t t = 0; t < F; ++t)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x)
          for (int c = 0; c < 3; ++c) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            const double smooth =
                100 + 60 * std::sin(0.1 * (k + 1) * x + 0.4 * t + c) + 40 * std::cos(0.2 * y);
            clips[k][static_cast<size_t>(((t * H + y) * W + x) * 3 + c)] =
                static_cast<uint8_t>(smooth + static_cast<double>(state >> 59));
          }
  }
  auto name = [&](const std::string& run, int k) {
    return dir / (run + std::to_string(k) + ".mp4");
  };
  for (int k = 0; k < kClips; ++k) video::write(name("forward", k), clips[k], F, H, W);
  for (int k = kClips - 1; k >= 0; --k) video::write(name("reverse", k), clips[k], F, H, W);
  std::vector<std::future<void>> parallel;
  for (int k = 0; k < kClips; ++k) {
    parallel.push_back(std::async(
        std::launch::async, [&, k] { video::write(name("parallel", k), clips[k], F, H, W); }));
  }
  for (auto& f : parallel) f.get();
  for (int k = 0; k < kClips; ++k) {
    const std::string forward = fs::read_file(name("forward", k));
    EXPECT_EQ(forward, fs::read_file(name("reverse", k))) << "clip " << k;
    EXPECT_EQ(forward, fs::read_file(name("parallel", k))) << "clip " << k;
  }
}

}  // namespace
}  // namespace m3ret::data
