// The MPI sharder on real image files (2 ranks): content equals reading the
// samples directly, 1 rank and 2 ranks give identical shards and index,
// complete shards are kept on a rerun, rejects.csv lists refused inputs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <fstream>

#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkPNGImageIO.h>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/mpi_communicator.h"
#include "core/runtime.h"
#include "data/manifest.h"
#include "data/reader.h"
#include "sharding/shard_set.h"
#include "sharding/shard_writer.h"
#include "sharding/sharder.h"
#include "test_util.h"

namespace m3ret::sharding {
namespace {

namespace stdfs = std::filesystem;

void write_png(const stdfs::path& path, int w, int h, int seed) {
  using Image = itk::Image<uint8_t, 2>;
  auto image = Image::New();
  Image::RegionType region;
  region.SetSize({{static_cast<itk::SizeValueType>(w), static_cast<itk::SizeValueType>(h)}});
  image->SetRegions(region);
  image->Allocate();
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      image->SetPixel({{x, y}}, static_cast<uint8_t>((x * 5 + y * 3 + seed * 29) % 251));
    }
  }
  auto writer = itk::ImageFileWriter<Image>::New();
  writer->SetImageIO(itk::PNGImageIO::New());
  writer->SetFileName(path.string());
  writer->SetInput(image);
  writer->Update();
}

// 7 readable images + 1 corrupt + 1 missing, over two modalities.
stdfs::path make_dataset(const stdfs::path& dir) {
  const auto manifest = dir / "manifest.csv";
  if (Runtime::get().rank() == 0) {
    stdfs::create_directories(dir / "img");
    std::string csv = "path,modality,labels,group,split\n";
    for (int i = 0; i < 5; ++i) {
      write_png(dir / fmt::format("img/us{}.png", i), 40 + i * 4, 30, i);
      csv += fmt::format("img/us{}.png,ultrasound,{},p{},train\n", i,
                         i % 2 ? "cyst" : "nodule|mass", i / 2);
      if (i == 2) csv += "img/broken.png,ultrasound,cyst,p9,train\n";
    }
    std::ofstream(dir / "img/broken.png") << "this is not a PNG file";
    for (int i = 0; i < 2; ++i) {
      write_png(dir / fmt::format("img/xr{}.png", i), 32, 32 + 8 * i, 10 + i);
      csv += fmt::format("img/xr{}.png,xray,normal,q{},test\n", i, i);
    }
    csv += "img/missing.png,xray,normal,q7,test\n";
    fs::write_atomic(manifest, csv);
  }
  Runtime::get().world_comm().barrier();
  return manifest;
}

data::PreprocessConfig preprocess(int64_t size) {
  data::PreprocessConfig pp;
  pp.image_size = size;
  return pp;
}

ShardConfig shard_config() {
  ShardConfig c;
  c.samples_per_shard = 2;
  c.threads = 2;
  c.compression = 4;
  return c;
}

std::map<std::string, std::string> shard_checksums(const stdfs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : stdfs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file())
      out[stdfs::relative(e.path(), dir).string()] = fs::checksum_file(e.path());
  }
  return out;
}

TEST(Sharder, TwoRanksMatchDirectReadsOneRankAndResume) {
  auto& comm = Runtime::get().world_comm();
  ASSERT_EQ(comm.size(), 2) << "run under mpiexec -n 2";
  testing::TempDir tmp("sharder");
  const auto manifest = make_dataset(tmp.path());
  const auto out2 = tmp / "shards-2ranks";

  ShardSummary sum = shard_dataset(manifest, out2, shard_config(), preprocess(16), comm);
  EXPECT_EQ(sum.rows, 9);
  EXPECT_EQ(sum.samples, 7);
  EXPECT_EQ(sum.rejected, 2);
  EXPECT_EQ(sum.shards, 3 + 2);  // ultrasound: 6 rows, xray: 3 rows
  EXPECT_EQ(sum.written, 5);
  EXPECT_EQ(sum.skipped, 0);

  if (comm.rank() == 0) {
    // Content equals the samples read directly, in manifest order.
    auto rows = data::read_manifest(manifest);
    auto set = ShardSet::open(out2);
    std::map<std::string, int64_t> next;
    for (const auto& row : rows) {
      if (row.path.filename() == "broken.png" || row.path.filename() == "missing.png") continue;
      data::Sample want = data::read_sample(row, manifest.parent_path(), preprocess(16));
      data::Sample got = set->read(row.modality, next[row.modality]++);
      EXPECT_EQ(got.id, want.id);
      EXPECT_EQ(got.pixels, want.pixels) << want.id;
      EXPECT_EQ(got.labels, want.labels);
      EXPECT_EQ(got.group, want.group);
      EXPECT_EQ(std::vector<int64_t>({got.C, got.T, got.H, got.W}),
                std::vector<int64_t>({want.C, want.T, want.H, want.W}));
    }
    EXPECT_EQ(set->info("ultrasound").count, 5);
    EXPECT_EQ(set->info("xray").count, 2);
    EXPECT_EQ(set->label_vocabulary(),
              std::vector<std::string>({"cyst", "mass", "nodule", "normal"}));
    // rejects.csv names both refused inputs with their manifest lines.
    std::string rejects = fs::read_file(out2 / "rejects.csv");
    EXPECT_THAT(rejects, ::testing::StartsWith("path,modality,line,reason\n"));
    EXPECT_THAT(rejects, ::testing::HasSubstr("broken.png,ultrasound,5,"));
    EXPECT_THAT(rejects, ::testing::HasSubstr("missing.png,xray,10,"));
    EXPECT_EQ(std::count(rejects.begin(), rejects.end(), '\n'), 3);
  }
  comm.barrier();

  // One rank alone writes exactly the same files.
  MPI_Comm solo;
  MPI_Comm_split(MPI_COMM_WORLD, comm.rank() == 0 ? 0 : MPI_UNDEFINED, 0, &solo);
  const auto out1 = tmp / "shards-1rank";
  if (comm.rank() == 0) {
    MpiCommunicator one(solo);
    ShardSummary s1 = shard_dataset(manifest, out1, shard_config(), preprocess(16), one);
    EXPECT_EQ(s1.samples, 7);
    EXPECT_EQ(fs::read_file(out1 / "index.json"), fs::read_file(out2 / "index.json"));
    EXPECT_EQ(shard_checksums(out1), shard_checksums(out2));
    MPI_Comm_free(&solo);
  }
  comm.barrier();

  // Kill-and-resume: a lost shard and a leftover partial file are redone, the
  // complete shards are kept, and the result is the same.
  const std::string index_before = fs::read_file(out2 / "index.json");
  const auto before = shard_checksums(out2);
  comm.barrier();
  if (comm.rank() == 0) {
    stdfs::remove(out2 / "ultrasound/shard-00001.h5");
    std::ofstream(out2 / "ultrasound/shard-00001.h5.tmp-999-0") << "partial";
    stdfs::remove(out2 / "index.json");
  }
  comm.barrier();
  ShardSummary again = shard_dataset(manifest, out2, shard_config(), preprocess(16), comm);
  EXPECT_EQ(again.written, 1);
  EXPECT_EQ(again.skipped, 4);
  EXPECT_EQ(fs::read_file(out2 / "index.json"), index_before);
  EXPECT_EQ(shard_checksums(out2), before);  // no temporary file left either
  comm.barrier();                            // every rank has checked before the next run rewrites

  // Other preprocessing: every shard is stale and rewritten.
  ShardSummary bigger = shard_dataset(manifest, out2, shard_config(), preprocess(24), comm);
  EXPECT_EQ(bigger.written, 5);
  EXPECT_EQ(bigger.skipped, 0);
  if (comm.rank() == 0) {
    EXPECT_EQ(ShardSet::open(out2)->info("xray").H, 24);
  }
  comm.barrier();
}

// A rerun notices what changed since the shards were written: a shard whose
// pixels were overwritten is rewritten (not kept with a fresh checksum), an
// input file rewritten with other pixels is read again, and a file that was
// missing and now exists becomes a sample.
TEST(Sharder, ResumeRewritesDamagedShardsAndChangedInputs) {
  auto& comm = Runtime::get().world_comm();
  testing::TempDir tmp("sharder-resume");
  const auto manifest = make_dataset(tmp.path());
  const auto out = tmp / "shards";
  shard_dataset(manifest, out, shard_config(), preprocess(16), comm);
  const auto before = shard_checksums(out);
  comm.barrier();
  if (comm.rank() == 0) {
    // Damage xray/shard-00000.h5 (xr0, xr1) in place: flip the middle byte of its first sample's chunk.
    const auto shard = out / "xray/shard-00000.h5";
    const auto set = ShardSet::open(out);
    std::string bytes = fs::read_file(shard);
    const auto chunk = ShardWriter::encode(set->read("xray", 0), 4).chunk;
    const size_t at = bytes.find(std::string(chunk.begin(), chunk.end()));
    ASSERT_NE(at, std::string::npos);
    bytes[at + chunk.size() / 2] = static_cast<char>(~bytes[at + chunk.size() / 2]);
    std::ofstream(shard, std::ios::binary | std::ios::trunc) << bytes;
  }
  comm.barrier();
  ShardSummary again = shard_dataset(manifest, out, shard_config(), preprocess(16), comm);
  EXPECT_EQ(again.written, 1);  // the damaged shard only
  EXPECT_EQ(shard_checksums(out), before);
  comm.barrier();

  if (comm.rank() == 0) {
    write_png(tmp / "img/us0.png", 44, 30, 77);  // other pixels (and size) under the same name
    write_png(tmp / "img/missing.png", 32, 32, 5);
  }
  comm.barrier();
  ShardSummary changed = shard_dataset(manifest, out, shard_config(), preprocess(16), comm);
  EXPECT_EQ(changed.written, 2);  // ultrasound/shard-00000 (us0) and xray/shard-00001 (missing.png)
  EXPECT_EQ(changed.samples, 8);
  EXPECT_EQ(changed.rejected, 1);
  if (comm.rank() == 0) {
    const auto set = ShardSet::open(out);
    const auto rows = data::read_manifest(manifest);
    EXPECT_EQ(set->read("ultrasound", 0).pixels,
              data::read_sample(rows[0], tmp.path(), preprocess(16)).pixels);
    EXPECT_EQ(set->info("xray").count, 3);
  }
  comm.barrier();
}

std::vector<std::string> h5_files(const stdfs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : stdfs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().string().find(".h5") != std::string::npos) {
      out.push_back(stdfs::relative(e.path(), dir).string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Sharder, CutsShardsByBytesAndRemovesTheOldCut) {
  auto& comm = Runtime::get().world_comm();
  testing::TempDir tmp("sharder-bytes");
  const auto manifest = make_dataset(tmp.path());
  const auto out = tmp / "shards";
  ShardConfig one = shard_config();
  one.samples_per_shard = 1;
  EXPECT_EQ(shard_dataset(manifest, out, one, preprocess(16), comm).shards, 9);
  comm.barrier();

  // 16 x 16 grey samples are 256 bytes: 3 fit in 800 bytes (capped by samples_per_shard).
  ShardConfig bytes = shard_config();
  bytes.samples_per_shard = 1000;
  bytes.shard_bytes = 800;
  EXPECT_EQ(rows_per_shard("xray", bytes, preprocess(16)), 3);
  bytes.samples_per_shard = 2;
  EXPECT_EQ(rows_per_shard("xray", bytes, preprocess(16)), 2);
  bytes.samples_per_shard = 1000;
  data::PreprocessConfig pp = preprocess(16);
  EXPECT_EQ(rows_per_shard("endoscopy", bytes, pp), 1);  // 3 x 8 x 16 x 16 > 800: at least 1
  pp.rgb_modalities = {"ultrasound"};
  EXPECT_EQ(rows_per_shard("ultrasound", bytes, pp), 1);  // 3 x 16 x 16 = 768
  ShardSummary sum = shard_dataset(manifest, out, bytes, preprocess(16), comm);
  EXPECT_EQ(sum.shards, 2 + 1);  // ultrasound: 6 rows, xray: 3 rows
  EXPECT_EQ(sum.samples, 7);
  if (comm.rank() == 0) {
    EXPECT_EQ(h5_files(out),
              std::vector<std::string>({"ultrasound/shard-00000.h5", "ultrasound/shard-00001.h5",
                                        "xray/shard-00000.h5"}));
    auto index = nlohmann::json::parse(fs::read_file(out / "index.json"));
    EXPECT_EQ(index.at("shard").at("shard_bytes").get<int64_t>(), 800);
    EXPECT_EQ(index.at("modalities").at("ultrasound").at("shards").at(1).at("first_row"), 3);
    auto set = ShardSet::open(out);
    EXPECT_EQ(set->info("ultrasound").count, 5);
    EXPECT_EQ(set->info("xray").count, 2);
  }
  comm.barrier();
}

// Groups interleaved in the manifest, one of them only at its start and its
// end: each shard holds its group's rows in manifest order (each rank reads
// only its shards' rows), rejects.csv lists the refused rows of all shards and
// ranks in manifest order, and one rank writes the same files as two.
TEST(Sharder, InterleavedGroupsKeepManifestOrderAndRejectLines) {
  auto& comm = Runtime::get().world_comm();
  testing::TempDir tmp("sharder-interleaved");
  const auto manifest = tmp / "manifest.csv";
  // (name, modality); names starting with "gone" are never written.
  const std::vector<std::pair<std::string, std::string>> rows = {
      {"o0", "other"},      {"x0", "xray"}, {"u0", "ultrasound"},    {"gone1", "xray"},
      {"u1", "ultrasound"}, {"x1", "xray"}, {"gone2", "ultrasound"}, {"u2", "ultrasound"},
      {"x2", "xray"},       {"x3", "xray"}, {"u3", "ultrasound"},    {"gone3", "xray"},
      {"u4", "ultrasound"}, {"o1", "other"}};
  if (comm.rank() == 0) {
    stdfs::create_directories(tmp / "img");
    std::string csv = "path,modality,labels,group,split\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      if (rows[i].first.rfind("gone", 0) != 0) {
        write_png(tmp / ("img/" + rows[i].first + ".png"), 24, 20, int(i));
      }
      csv += fmt::format("img/{}.png,{},l{},g{},train\n", rows[i].first, rows[i].second, i % 3, i);
    }
    fs::write_atomic(manifest, csv);
  }
  comm.barrier();
  ShardConfig cfg = shard_config();  // 2 rows per shard
  const auto out2 = tmp / "shards-2";
  ShardSummary sum = shard_dataset(manifest, out2, cfg, preprocess(16), comm);
  EXPECT_EQ(sum.rows, 14);
  EXPECT_EQ(sum.samples, 11);
  EXPECT_EQ(sum.rejected, 3);
  EXPECT_EQ(sum.shards, 3 + 3 + 1);  // xray 6 rows, ultrasound 6 rows, other 2 rows
  if (comm.rank() == 0) {
    auto set = ShardSet::open(out2);
    std::map<std::string, int64_t> next;
    for (const auto& row : data::read_manifest(manifest)) {
      if (row.path.filename().string().rfind("gone", 0) == 0) continue;
      const data::Sample want = data::read_sample(row, tmp.path(), preprocess(16));
      const data::Sample got = set->read(row.modality, next[row.modality]++);
      EXPECT_EQ(got.id, want.id);
      EXPECT_EQ(got.pixels, want.pixels) << want.id;
      EXPECT_EQ(got.group, want.group);
    }
    EXPECT_EQ(next["other"], 2);
    const std::string rejects = fs::read_file(out2 / "rejects.csv");
    const size_t a = rejects.find("/img/gone1.png,xray,5,");
    const size_t b = rejects.find("/img/gone2.png,ultrasound,8,");
    const size_t c = rejects.find("/img/gone3.png,xray,13,");
    ASSERT_NE(a, std::string::npos) << rejects;
    ASSERT_NE(b, std::string::npos) << rejects;
    ASSERT_NE(c, std::string::npos) << rejects;
    EXPECT_LT(a, b);
    EXPECT_LT(b, c);
    EXPECT_EQ(std::count(rejects.begin(), rejects.end(), '\n'), 4);
    auto index = nlohmann::json::parse(fs::read_file(out2 / "index.json"));
    EXPECT_EQ(index.at("modalities").at("xray").at("shards").at(2).at("first_row"), 4);
    EXPECT_EQ(index.at("modalities").at("other").at("shards").at(0).at("rows"), 2);
  }
  comm.barrier();
  MPI_Comm solo;
  MPI_Comm_split(MPI_COMM_WORLD, comm.rank() == 0 ? 0 : MPI_UNDEFINED, 0, &solo);
  if (comm.rank() == 0) {
    MpiCommunicator one(solo);
    const auto out1 = tmp / "shards-1";
    shard_dataset(manifest, out1, cfg, preprocess(16), one);
    EXPECT_EQ(fs::read_file(out1 / "index.json"), fs::read_file(out2 / "index.json"));
    EXPECT_EQ(fs::read_file(out1 / "rejects.csv"), fs::read_file(out2 / "rejects.csv"));
    EXPECT_EQ(shard_checksums(out1), shard_checksums(out2));
    MPI_Comm_free(&solo);
  }
  comm.barrier();
}

TEST(Sharder, FailsOnEveryRankForABadManifest) {
  auto& comm = Runtime::get().world_comm();
  testing::TempDir tmp("sharder-bad");
  if (comm.rank() == 0) fs::write_atomic(tmp / "manifest.csv", "path,modality\nx.png,xray\n");
  comm.barrier();
  EXPECT_THROW(
      shard_dataset(tmp / "manifest.csv", tmp / "out", shard_config(), preprocess(16), comm),
      Error);
}

}  // namespace
}  // namespace m3ret::sharding
