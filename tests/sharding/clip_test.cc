// Video clips drawn per step: a shard stores all of a video's frames, the
// loader reads a new clip of them every time the sampler draws the video
// (deterministic in seed, step and sample), reads without a step (embedding)
// take the fixed centre clip; shards of an older format are refused naming the
// file and the command that rewrites them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "sharding/hdf5_util.h"
#include "sharding/loader.h"
#include "sharding/shard_index.h"
#include "sharding/shard_set.h"
#include "sharding/shard_writer.h"
#include "test_util.h"

namespace m3ret::sharding {
namespace {

using testing::TempDir;

constexpr int64_t kStored = 12, kFrames = 3, kStride = 2, kSide = 4, kSamples = 6;
constexpr int64_t kStarts = kStored - (kFrames - 1) * kStride;  // 8

// Every pixel of frame t of sample i (channel c) holds value(i, c, t).
uint8_t value(int64_t i, int64_t c, int64_t t) { return static_cast<uint8_t>(i * 40 + c * 13 + t); }

// kSamples endoscopy videos of kStored frames in one shard whose reads are
// clips of kFrames frames at kStride; index.json written.
void write_videos(const std::filesystem::path& dir) {
  ShardHeader h{"endoscopy", 4, 0, 0, "test"};
  h.clip_frames = kFrames;
  h.clip_stride = kStride;
  ShardWriter w(dir / "endoscopy/shard-00000.h5", h);
  for (int64_t i = 0; i < kSamples; ++i) {
    data::Sample s;
    s.C = 3, s.T = kStored, s.H = kSide, s.W = kSide;
    s.modality = "endoscopy";
    s.id = "v" + std::to_string(i);
    s.split = "train";
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t t = 0; t < kStored; ++t)
        s.pixels.insert(s.pixels.end(), kSide * kSide, value(i, c, t));
    w.append(s);
  }
  w.commit();
  write_index(dir, build_index({describe_shard(dir, "endoscopy/shard-00000.h5")}, {}));
}

// Checks that `px` ([3, kFrames, kSide, kSide]) is sample i's clip from `start`.
void expect_clip(const uint8_t* px, int64_t i, int64_t start) {
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t t = 0; t < kFrames; ++t)
      ASSERT_EQ(px[(c * kFrames + t) * kSide * kSide], value(i, c, start + t * kStride))
          << "sample " << i << " start " << start << " channel " << c << " frame " << t;
}

TEST(ShardClips, ReadsAreClipsOfTheStoredFramesAndTheCentreClipIsFixed) {
  TempDir dir("clips");
  write_videos(dir.path());
  auto set = ShardSet::open(dir.path());
  const ModalityInfo& mi = set->info("endoscopy");
  EXPECT_EQ(mi.T, kFrames);
  EXPECT_EQ(mi.stored_T, kStored);
  EXPECT_EQ(mi.stride, kStride);
  EXPECT_EQ(mi.clip_starts(), kStarts);
  EXPECT_EQ(mi.centre_start(), 3);
  std::vector<uint8_t> px(3 * kFrames * kSide * kSide);
  for (int pass = 0; pass < 2; ++pass) {  // the centre clip: the same every time
    for (int64_t i = 0; i < kSamples; ++i) {
      set->read_pixels("endoscopy", i, px.data());
      expect_clip(px.data(), i, 3);
      data::Sample s = set->read("endoscopy", i);
      EXPECT_EQ(s.T, kFrames);
      EXPECT_EQ(s.pixels, px);
    }
  }
  set->read_clip("endoscopy", 2, kStarts - 1, px.data());  // the last clip ends on the last frame
  expect_clip(px.data(), 2, kStarts - 1);
  EXPECT_THROW(set->read_clip("endoscopy", 2, kStarts, px.data()), Error);
  EXPECT_THROW(set->read_clip("endoscopy", 2, -1, px.data()), Error);
}

TEST(ShardClips, ClipStartIsAPureFunctionOfSeedStepAndSample) {
  std::set<int64_t> seen;
  for (int64_t step = 0; step < 200; ++step) {
    const int64_t s = clip_start(7, step, 3, kStarts);
    EXPECT_EQ(s, clip_start(7, step, 3, kStarts));
    ASSERT_GE(s, 0);
    ASSERT_LT(s, kStarts);
    seen.insert(s);
  }
  EXPECT_EQ(seen.size(), size_t(kStarts));  // 200 draws of 8 values cover them all
  int differ_seed = 0, differ_sample = 0;
  for (int64_t step = 0; step < 32; ++step) {
    differ_seed += clip_start(7, step, 3, kStarts) != clip_start(8, step, 3, kStarts);
    differ_sample += clip_start(7, step, 3, kStarts) != clip_start(7, step, 4, kStarts);
  }
  EXPECT_GT(differ_seed, 16);
  EXPECT_GT(differ_sample, 16);
  EXPECT_EQ(clip_start(7, 5, 3, 1), 0);
}

// The starts of every step's batch from a loader over all samples.
std::vector<std::vector<int64_t>> loader_starts(const ShardSet& set, int64_t batch, int rank,
                                                int world, uint64_t seed, int64_t steps,
                                                std::map<int64_t, std::set<int64_t>>* per_sample) {
  std::map<std::string, std::vector<int64_t>> pool;
  for (int64_t i = 0; i < kSamples; ++i) pool["endoscopy"].push_back(i);
  LoaderConfig cfg;
  cfg.workers = 2;
  Loader loader(set, DistributedSampler(pool, batch, rank, world, seed), cfg);
  std::vector<std::vector<int64_t>> out;
  for (int64_t s = 0; s < steps; ++s) {
    LoadedBatch b = loader.next();
    EXPECT_EQ(b.T, kFrames);
    const int64_t numel = 3 * kFrames * kSide * kSide;
    for (int64_t i = 0; i < b.B; ++i) {
      EXPECT_EQ(b.clip_starts[size_t(i)], clip_start(seed, s, rank * batch + i, kStarts));
      expect_clip(b.pixels.data() + i * numel, b.indices[size_t(i)], b.clip_starts[size_t(i)]);
      if (per_sample) (*per_sample)[b.indices[size_t(i)]].insert(b.clip_starts[size_t(i)]);
    }
    out.push_back(b.clip_starts);
  }
  return out;
}

TEST(ShardClips, TheLoaderDrawsANewClipEachStepDeterministically) {
  TempDir dir("clips-loader");
  write_videos(dir.path());
  auto set = ShardSet::open(dir.path());
  std::map<int64_t, std::set<int64_t>> per_sample;
  const auto a = loader_starts(*set, 2, 0, 1, 11, 30, &per_sample);
  // One sample drawn at several steps takes different clips.
  for (const auto& [i, starts] : per_sample) EXPECT_GE(starts.size(), 3u) << "sample " << i;
  // The same (seed, step, sample) gives the same clip; another seed other clips.
  EXPECT_EQ(loader_starts(*set, 2, 0, 1, 11, 30, nullptr), a);
  EXPECT_NE(loader_starts(*set, 2, 0, 1, 12, 30, nullptr), a);
  // 2 ranks with batch 1 take, concatenated, the clips of 1 rank with batch 2.
  const auto r0 = loader_starts(*set, 1, 0, 2, 11, 30, nullptr);
  const auto r1 = loader_starts(*set, 1, 1, 2, 11, 30, nullptr);
  for (size_t s = 0; s < a.size(); ++s) EXPECT_EQ(a[s], (std::vector<int64_t>{r0[s][0], r1[s][0]}));
}

void set_version(const std::filesystem::path& file, int64_t version) {
  h5::Hdf5Lock lock;
  h5::Handle f = h5::check(H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open", file);
  h5::check_status(H5Adelete(f.get(), "format_version"), "delete format_version", file);
  h5::write_int_attr(f.get(), "format_version", {version}, file);
}

TEST(ShardFormat, OlderShardsAndIndexesAreRefusedNamingTheFileAndTheCommand) {
  TempDir dir("clips-old");
  write_videos(dir.path());
  const auto shard = dir / "endoscopy/shard-00000.h5";
  set_version(shard, 3);  // a shard written before endoscopy stills were one-frame images
  for (int i = 0; i < 2; ++i) {
    try {
      if (i == 0)
        read_shard_metadata(shard);
      else
        ShardSet::open(dir.path());
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), ::testing::HasSubstr(shard.string() + ": written by an older m3ret"));
      EXPECT_THAT(e.what(), ::testing::HasSubstr(fmt::format(
                                "format_version 3, this build reads {}", kShardFormatVersion)));
      EXPECT_THAT(e.what(), ::testing::HasSubstr(
                                "run `m3ret shard --manifest MANIFEST.csv --out SHARDS` again"));
    }
  }
  set_version(shard, kShardFormatVersion);
  EXPECT_NO_THROW(ShardSet::open(dir.path()));
  auto index = nlohmann::json::parse(fs::read_file(dir / "index.json"));
  index["format_version"] = 1;
  fs::write_atomic(dir / "index.json", index.dump());
  try {
    ShardSet::open(dir.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr((dir / "index.json").string() +
                                               ": written by an older m3ret"));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("m3ret shard"));
  }
  // A count far beyond int64 (found by fuzz_shard_index: converting it was undefined behaviour).
  index["format_version"] = kIndexFormatVersion;
  index["modalities"]["endoscopy"]["count"] = 1.66667e64;
  fs::write_atomic(dir / "index.json", index.dump());
  try {
    ShardSet::open(dir.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr((dir / "index.json").string() +
                                               ": number 1.66667e+64 is out of range"));
  }
}

TEST(ShardWriter, RefusesSamplesWithFewerFramesThanTheClip) {
  TempDir dir("clips-short");
  ShardHeader h{"endoscopy", 0, 0, 0, "test"};
  h.clip_frames = 4;
  h.clip_stride = 3;  // needs 10 frames
  ShardWriter w(dir / "endoscopy/shard-00000.h5", h);
  data::Sample s;
  s.C = 3, s.T = 9, s.H = 2, s.W = 2;
  s.modality = "endoscopy";
  s.id = "short";
  s.pixels.assign(size_t(s.numel()), 7);
  try {
    w.append(s);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                ::testing::HasSubstr("'short' has 9 frames, fewer than a clip of 4 at stride 3"));
  }
}

}  // namespace
}  // namespace m3ret::sharding
