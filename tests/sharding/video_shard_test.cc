// `m3ret shard` on videos (2 ranks): a video's shard holds all
// preprocess.video_stored_frames frames, every read returns a clip of them
// (the centre clip equals what data::read_sample gives, e.g. for a search
// query), and a shard of an older format is rewritten by the rerun its
// refusal asks for.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkPNGImageIO.h>

#include <fmt/format.h>

#include "core/fs.h"
#include "core/runtime.h"
#include "data/manifest.h"
#include "data/reader.h"
#include "data/video_writer.h"
#include "sharding/loader.h"
#include "sharding/hdf5_util.h"
#include "sharding/shard_format.h"
#include "sharding/shard_set.h"
#include "sharding/sharder.h"
#include "test_util.h"

namespace m3ret::sharding {
namespace {

namespace stdfs = std::filesystem;

// Frame k of video v is a flat grey 10 + 12 k + 3 v, with a white corner.
std::vector<uint8_t> video_frames(int v, int64_t frames, int64_t side) {
  std::vector<uint8_t> rgb;
  for (int64_t t = 0; t < frames; ++t)
    for (int64_t p = 0; p < side * side; ++p)
      rgb.insert(rgb.end(), 3, p < side / 4 ? 250 : uint8_t(10 + 12 * t + 3 * v));
  return rgb;
}

data::PreprocessConfig clip_preprocess() {
  data::PreprocessConfig pp;
  pp.image_size = 16;
  pp.resize = "crop";
  pp.video_stored_frames = 12;
  pp.video_frames = 3;
  pp.video_frame_stride = 4;  // 4 starts
  return pp;
}

stdfs::path make_videos(const stdfs::path& dir) {
  if (Runtime::get().rank() == 0) {
    std::string csv = "path,modality,labels,group,split\n";
    for (int v = 0; v < 3; ++v) {
      data::video::write(dir / fmt::format("v{}.mp4", v), video_frames(v, 12, 32), 12, 32, 32);
      csv += fmt::format("v{}.mp4,endoscopy,polyp,p{},train\n", v, v);
    }
    fs::write_atomic(dir / "manifest.csv", csv);
  }
  Runtime::get().world_comm().barrier();
  return dir / "manifest.csv";
}

TEST(ShardVideos, StoreAllFramesAndReadClipsThatMatchTheReader) {
  auto& comm = Runtime::get().world_comm();
  testing::TempDir tmp("shard-videos");
  const auto manifest = make_videos(tmp.path());
  ShardConfig cfg;
  cfg.samples_per_shard = 2;
  const auto out = tmp / "shards";
  ShardSummary sum = shard_dataset(manifest, out, cfg, clip_preprocess(), comm);
  EXPECT_EQ(sum.samples, 3);
  if (comm.rank() == 0) {
    const ShardMetadata md = read_shard_metadata(out / "endoscopy/shard-00000.h5");
    EXPECT_EQ(md.T, 12);  // stored: every frame
    EXPECT_EQ(std::vector<int64_t>({md.clip_frames, md.clip_stride}), std::vector<int64_t>({3, 4}));
    std::unique_ptr<ShardSet> set = ShardSet::open(out);
    const ModalityInfo& mi = set->info("endoscopy");
    EXPECT_EQ(std::vector<int64_t>({mi.C, mi.T, mi.stored_T, mi.stride, mi.clip_starts()}),
              std::vector<int64_t>({3, 3, 12, 4, 4}));
    const auto rows = data::read_manifest(manifest);
    data::PreprocessConfig stored_pp = clip_preprocess();
    stored_pp.stored_video = true;
    for (int64_t i = 0; i < 3; ++i) {
      // The centre clip (start 1: frames 1, 5, 9) is what the reader returns.
      const data::Sample want = data::read_sample(rows[size_t(i)], tmp.path(), clip_preprocess());
      EXPECT_EQ(set->read("endoscopy", i).pixels, want.pixels) << i;
      const data::Sample all = data::read_sample(rows[size_t(i)], tmp.path(), stored_pp);
      std::vector<uint8_t> got(want.pixels.size()), expect(want.pixels.size());
      for (int64_t start = 0; start < 4; ++start) {
        set->read_clip("endoscopy", i, start, got.data());
        data::copy_clip(all.pixels.data(), 3, 12, 16 * 16, start, 3, 4, expect.data());
        EXPECT_EQ(got, expect) << i << " start " << start;
      }
      EXPECT_NEAR(got[8 * 16 + 8], 10 + 12 * 3 + 3 * i, 5);  // start 3: frame 3
    }
    set.reset();  // (HDF5 opens a file read-write only when nothing has it open)
    // A shard of the previous format: refused on reading, rewritten by a rerun.
    const auto old = out / "endoscopy/shard-00001.h5";
    h5::Hdf5Lock lock;
    h5::Handle f = h5::check(H5Fopen(old.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open", old);
    h5::check_status(H5Adelete(f.get(), "format_version"), "delete", old);
    h5::write_int_attr(f.get(), "format_version", {2}, old);
  }
  comm.barrier();
  if (comm.rank() == 0) {
    EXPECT_THROW(ShardSet::open(out), Error);
  }
  ShardSummary again = shard_dataset(manifest, out, cfg, clip_preprocess(), comm);
  EXPECT_EQ(again.written, 1);
  EXPECT_EQ(again.skipped, 1);
  if (comm.rank() == 0) {
    EXPECT_EQ(ShardSet::open(out)->info("endoscopy").count, 3);
  }
  comm.barrier();
}

// An RGB still: left half red, right half blue, shifted by `v`.
void write_still(const stdfs::path& path, int v) {
  using Image = itk::Image<itk::RGBPixel<uint8_t>, 2>;
  auto image = Image::New();
  image->SetRegions(Image::RegionType({{0, 0}}, {{40, 30}}));
  image->Allocate();
  for (int y = 0; y < 30; ++y)
    for (int x = 0; x < 40; ++x) {
      itk::RGBPixel<uint8_t> p;
      p[0] = x < 20 ? uint8_t(200 + v) : 0;
      p[1] = uint8_t(3 * y + v);
      p[2] = x < 20 ? 0 : uint8_t(180 + v);
      image->SetPixel({{x, y}}, p);
    }
  auto writer = itk::ImageFileWriter<Image>::New();
  writer->SetImageIO(itk::PNGImageIO::New());
  writer->SetFileName(path.string());
  writer->SetInput(image);
  writer->Update();
}

// 2 endoscopy videos and 3 stills, interleaved in the manifest; datasets a
// (both videos, stills 0 and 2) and b (still 1).
stdfs::path make_videos_and_stills(const stdfs::path& dir) {
  if (Runtime::get().rank() == 0) {
    std::string csv = "path,modality,labels,group,split,dataset\n";
    for (int v = 0; v < 3; ++v) {
      write_still(dir / fmt::format("s{}.png", v), v);
      csv += fmt::format("s{}.png,endoscopy,polyp,s{},train,{}\n", v, v, v == 1 ? "b" : "a");
      if (v == 2) break;
      data::video::write(dir / fmt::format("v{}.mp4", v), video_frames(v, 12, 32), 12, 32, 32);
      csv += fmt::format("v{}.mp4,endoscopy,polyp,v{},train,a\n", v, v);
    }
    fs::write_atomic(dir / "manifest.csv", csv);
  }
  Runtime::get().world_comm().barrier();
  return dir / "manifest.csv";
}

// Endoscopy stills are images: stored as one frame in a group of their own
// (endoscopy-image) beside the videos, read and batched as [3, 1, S, S], and
// read from the shards (embed) exactly as the reader gives a query (search).
TEST(ShardStills, AreOneFrameImagesInAGroupOfTheirOwn) {
  auto& comm = Runtime::get().world_comm();
  testing::TempDir tmp("shard-stills");
  const auto manifest = make_videos_and_stills(tmp.path());
  ShardConfig cfg;
  cfg.samples_per_shard = 2;
  const auto out = tmp / "shards";
  EXPECT_EQ(shard_dataset(manifest, out, cfg, clip_preprocess(), comm).samples, 5);
  if (comm.rank() == 0) {
    const ShardMetadata md = read_shard_metadata(out / "endoscopy-image/shard-00000.h5");
    EXPECT_EQ(md.modality, "endoscopy-image");
    EXPECT_EQ(std::vector<int64_t>({md.count, md.C, md.T, md.H, md.W, md.clip_frames}),
              std::vector<int64_t>({2, 3, 1, 16, 16, 1}));  // one stored frame per still
    EXPECT_EQ(read_shard_metadata(out / "endoscopy/shard-00000.h5").T, 12);
    std::unique_ptr<ShardSet> set = ShardSet::open(out);
    EXPECT_EQ(set->groups_of("endoscopy"),
              std::vector<std::string>({"endoscopy", "endoscopy-image"}));
    const ModalityInfo& mi = set->info("endoscopy-image");
    EXPECT_EQ(std::vector<int64_t>({mi.count, mi.C, mi.T, mi.stored_T, mi.clip_starts()}),
              std::vector<int64_t>({3, 3, 1, 1, 1}));
    EXPECT_EQ(mi.modality, "endoscopy");
    const auto rows = data::read_manifest(manifest);
    for (int64_t i = 0; i < 3; ++i) {
      const data::Sample query =
          data::read_sample(rows[size_t(2 * i)], tmp.path(), clip_preprocess());
      EXPECT_EQ(std::vector<int64_t>({query.C, query.T}), std::vector<int64_t>({3, 1}));
      const data::Sample got = set->read("endoscopy-image", i);
      EXPECT_EQ(got.modality, "endoscopy");
      EXPECT_EQ(got.T, 1);
      EXPECT_EQ(got.pixels, query.pixels) << i;         // embed and search see the same tensor
      EXPECT_NEAR(got.pixels[8 * 16 + 2], 200 + i, 2);  // red, left half
    }
    // Training batches are one group each: stills [B, 3, 1, S, S], videos clips of T frames.
    std::map<std::string, std::vector<int64_t>> pool{{"endoscopy", {0, 1}},
                                                     {"endoscopy-image", {0, 1, 2}}};
    DistributedSampler sampler(pool, 2, 0, 1, 7);
    EXPECT_DOUBLE_EQ(sampler.weights().at("endoscopy-image"), 0.6);  // its share of endoscopy
    Loader loader(*set, std::move(sampler), LoaderConfig{});
    std::map<std::string, int> seen;
    for (int step = 0; step < 12; ++step) {
      const LoadedBatch b = loader.next();
      ++seen[b.modality];
      const int64_t T = b.modality == "endoscopy-image" ? 1 : 3;
      EXPECT_EQ(std::vector<int64_t>({b.B, b.C, b.T, b.H, b.W}),
                std::vector<int64_t>({2, 3, T, 16, 16}));
      EXPECT_EQ(b.pixels.size(), size_t(2 * 3 * T * 16 * 16));
    }
    EXPECT_GT(seen["endoscopy-image"], 0);
    EXPECT_GT(seen["endoscopy"], 0);
    // The manifest's dataset column is kept per sample, for dataset weights.
    EXPECT_EQ(set->meta("endoscopy-image", 1).dataset, "b");
    EXPECT_EQ(set->read("endoscopy", 0).dataset, "a");
    EXPECT_EQ(pool_datasets(*set, pool),
              (std::map<std::string, std::vector<std::string>>{
                  {"endoscopy", {"a", "a"}}, {"endoscopy-image", {"a", "b", "a"}}}));
  }
  comm.barrier();
}

}  // namespace
}  // namespace m3ret::sharding
