// Video clips (docs/data.md, "Video clips"): a video is stored as
// preprocess.video_stored_frames frames sampled uniformly in time; a read
// returns its centre clip of video_frames frames at video_frame_stride, which is
// the clip the shards' reads return too. The stored frames are capped and must
// hold a clip.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "core/config.h"
#include "core/error.h"
#include "data/reader.h"
#include "data/settings.h"
#include "data/video_writer.h"
#include "data_test_util.h"
#include "test_util.h"

namespace m3ret::data {
namespace {

// Frame k of `frames` is a flat grey 10 + 14 k (RGB).
std::vector<uint8_t> grey_ramp_clip(int64_t frames, int64_t h, int64_t w) {
  std::vector<uint8_t> rgb;
  for (int64_t t = 0; t < frames; ++t)
    rgb.insert(rgb.end(), size_t(h * w * 3), uint8_t(10 + 14 * t));
  return rgb;
}

PreprocessConfig clip_cfg() {
  PreprocessConfig cfg = testutil::small_cfg();
  cfg.resize = "crop";
  cfg.video_stored_frames = 16;
  cfg.video_frames = 4;
  cfg.video_frame_stride = 3;  // 7 starts, the centre one is 3: frames 3, 6, 9, 12
  return cfg;
}

double frame_value(const Sample& s, int64_t c, int64_t t) {
  return s.pixels[size_t(((c * s.T + t) * s.H + s.H / 2) * s.W + s.W / 2)];
}

TEST(DataVideoClips, AReadIsTheCentreClipOfTheStoredFrames) {
  testing::TempDir dir("clips");
  video::write(dir / "v.mp4", grey_ramp_clip(16, 32, 32), 16, 32, 32);
  PreprocessConfig cfg = clip_cfg();
  cfg.stored_video = true;
  const Sample stored = read_sample(testutil::row(dir / "v.mp4", "endoscopy"), dir.path(), cfg);
  ASSERT_EQ(stored.T, 16);  // 16 frames sampled from 16: every frame
  for (int64_t t = 0; t < 16; ++t) EXPECT_NEAR(frame_value(stored, 1, t), 10 + 14 * t, 4) << t;

  cfg.stored_video = false;
  const Sample clip = read_sample(testutil::row(dir / "v.mp4", "endoscopy"), dir.path(), cfg);
  ASSERT_EQ(std::vector<int64_t>({clip.C, clip.T, clip.H, clip.W}),
            std::vector<int64_t>({3, 4, 32, 32}));
  std::vector<uint8_t> want(clip.pixels.size());
  copy_clip(stored.pixels.data(), 3, 16, 32 * 32, 3, 4, 3, want.data());
  EXPECT_EQ(clip.pixels, want);  // exactly frames 3, 6, 9, 12 of the stored ones
  EXPECT_NEAR(frame_value(clip, 0, 0), 10 + 14 * 3, 4);
  EXPECT_NEAR(frame_value(clip, 0, 3), 10 + 14 * 12, 4);
  // The same read again: the centre clip is fixed.
  EXPECT_EQ(read_sample(testutil::row(dir / "v.mp4", "endoscopy"), dir.path(), cfg).pixels,
            clip.pixels);
}

TEST(DataVideoClips, ClipHelpersCountStartsAndRefuseClipsThatDoNotFit) {
  EXPECT_EQ(clip_starts(16, 4, 3), 7);
  EXPECT_EQ(centre_clip_start(16, 4, 3), 3);
  EXPECT_EQ(clip_starts(10, 4, 3), 1);
  EXPECT_EQ(centre_clip_start(8, 8, 1), 0);
  EXPECT_THROW(clip_starts(9, 4, 3), Error);
  std::vector<uint8_t> stored(2 * 16), out(2 * 4);
  for (size_t i = 0; i < stored.size(); ++i) stored[i] = uint8_t(i);
  copy_clip(stored.data(), 2, 16, 1, 6, 4, 3, out.data());
  EXPECT_EQ(out, (std::vector<uint8_t>{6, 9, 12, 15, 22, 25, 28, 31}));
  EXPECT_THROW(copy_clip(stored.data(), 2, 16, 1, 7, 4, 3, out.data()), Error);
}

// preprocess.video_stored_frames is capped (kMaxStoredVideoFrames) and must hold
// a clip; both errors name the key.
TEST(DataVideoClips, StoredFramesAreCappedAndMustHoldAClip) {
  auto error_of = [](std::vector<std::string> sets) {
    try {
      config::load<Settings>(std::nullopt, sets);
    } catch (const config::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  Settings ok = config::load<Settings>(
      std::nullopt, {fmt::format("preprocess.video_stored_frames={}", kMaxStoredVideoFrames)});
  EXPECT_EQ(ok.preprocess.video_stored_frames, kMaxStoredVideoFrames);
  EXPECT_EQ(PreprocessConfig{}.video_stored_frames, 32);
  EXPECT_EQ(PreprocessConfig{}.video_frame_stride, 2);
  EXPECT_THAT(
      error_of({fmt::format("preprocess.video_stored_frames={}", kMaxStoredVideoFrames + 1)}),
      ::testing::HasSubstr("video_stored_frames"));
  EXPECT_THAT(
      error_of({"preprocess.video_stored_frames=14"}),  // 8 frames at stride 2 need 15
      ::testing::HasSubstr("'preprocess.video_stored_frames' = 14 is too small for a clip of "
                           "video_frames = 8 at video_frame_stride = 2: it needs at least 15"));
  EXPECT_EQ(error_of({"preprocess.video_stored_frames=15"}), "");
  // A config built in code is checked when a video is read.
  testing::TempDir dir("clips-bad");
  video::write(dir / "v.mp4", grey_ramp_clip(4, 16, 16), 4, 16, 16);
  PreprocessConfig bad = clip_cfg();
  bad.video_stored_frames = 9;
  EXPECT_THROW(read_sample(testutil::row(dir / "v.mp4", "endoscopy"), dir.path(), bad),
               config::Error);
}

}  // namespace
}  // namespace m3ret::data
