// ShardWriter -> ShardSet round trips, format checks, and an independent
// check of the file format with h5py.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <tuple>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "shard_test_util.h"
#include "sharding/shard_set.h"
#include "test_util.h"

namespace m3ret::sharding {
namespace {

using testing::make_sample;
using testing::TempDir;

std::vector<data::Sample> samples(const std::string& modality, int n, int64_t C, int64_t T,
                                  int64_t H, int64_t W) {
  std::vector<data::Sample> out;
  for (int i = 0; i < n; ++i) out.push_back(make_sample(modality, i, C, T, H, W));
  return out;
}

// Two modalities, several shards each, one compressed and one raw.
struct Fixture {
  std::vector<data::Sample> xray = samples("xray", 5, 1, 1, 16, 20);
  std::vector<data::Sample> endo = samples("endoscopy", 3, 3, 4, 8, 6);
  void write(const std::filesystem::path& dir) {
    auto entries = testing::write_shards(dir, endo, 2, 0);
    auto x = testing::write_shards(dir, xray, 2, 4);
    entries.insert(entries.end(), x.begin(), x.end());
    write_index(dir, build_index(entries, {{"manifest", "none"}}));
  }
};

TEST(ShardSet, RoundTripsPixelsAndMetadata) {
  TempDir dir("shardset-roundtrip");
  Fixture fx;
  fx.write(dir.path());
  auto set = ShardSet::open(dir.path());
  ASSERT_EQ(set->modalities().size(), 2u);
  EXPECT_EQ(set->modalities()[0].name, "xray");  // data::modality_names() order
  EXPECT_EQ(set->modalities()[1].name, "endoscopy");
  EXPECT_TRUE(set->has("xray"));
  EXPECT_FALSE(set->has("ct"));
  const auto& xi = set->info("xray");
  EXPECT_EQ(xi.count, 5);
  EXPECT_EQ(std::vector<int64_t>({xi.C, xi.T, xi.H, xi.W}), std::vector<int64_t>({1, 1, 16, 20}));
  EXPECT_EQ(set->info("endoscopy").count, 3);
  EXPECT_EQ(set->label_vocabulary(), std::vector<std::string>({"cyst", "mass", "nodule"}));
  for (const auto* group : {&fx.xray, &fx.endo}) {
    for (size_t i = 0; i < group->size(); ++i) {
      const data::Sample& want = (*group)[i];
      data::Sample got = set->read(want.modality, int64_t(i));
      EXPECT_EQ(got.pixels, want.pixels) << want.id;
      EXPECT_EQ(got.id, want.id);
      EXPECT_EQ(got.labels, want.labels);
      EXPECT_EQ(got.group, want.group);
      EXPECT_EQ(got.split, want.split);
      EXPECT_EQ(got.source, want.source);
      EXPECT_EQ(got.modality, want.modality);
      EXPECT_EQ(got.numel(), want.numel());
    }
  }
  EXPECT_THROW(set->meta("xray", 5), Error);
  EXPECT_THROW(set->meta("xray", -1), Error);
  EXPECT_THROW(set->info("ct"), Error);
}

TEST(ShardSet, ConcurrentReadsReturnTheRightPixels) {
  TempDir dir("shardset-threads");
  Fixture fx;
  fx.write(dir.path());
  auto set = ShardSet::open(dir.path());
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<uint8_t> buf;
      for (int rep = 0; rep < 20; ++rep) {
        for (size_t j = 0; j < fx.xray.size(); ++j) {
          size_t i = (j + t + rep) % fx.xray.size();
          buf.assign(fx.xray[i].pixels.size(), 0);
          set->read_pixels("xray", int64_t(i), buf.data());
          if (buf != fx.xray[i].pixels) ++bad;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
}

// Overwrites, in the file, the first occurrence of `bytes` (a stored chunk)
// with its bitwise complement at its middle byte. False when not found.
bool damage_chunk(const std::filesystem::path& file, const std::vector<uint8_t>& bytes) {
  std::string content = fs::read_file(file);
  const size_t at = content.find(std::string(bytes.begin(), bytes.end()));
  if (at == std::string::npos) return false;
  content[at + bytes.size() / 2] = static_cast<char>(~content[at + bytes.size() / 2]);
  std::ofstream(file, std::ios::binary | std::ios::trunc) << content;
  return true;
}

// Pixels overwritten in place (raw and deflated chunks) are never returned:
// the read fails naming the file and the sample; the other samples still read.
TEST(ShardSet, DamagedPixelsFailTheirChecksumOnRead) {
  TempDir dir("shardset-damaged");
  Fixture fx;
  fx.write(dir.path());
  const auto endo0 = dir / "endoscopy/shard-00000.h5";  // raw chunks
  const auto xray1 = dir / "xray/shard-00001.h5";       // deflated chunks
  ASSERT_TRUE(damage_chunk(endo0, fx.endo[1].pixels));
  ASSERT_TRUE(damage_chunk(xray1, ShardWriter::encode(fx.xray[3], 4).chunk));
  auto set = ShardSet::open(dir.path());
  for (const auto& [modality, index, file] :
       {std::tuple<std::string, int64_t, std::filesystem::path>{"endoscopy", 1, endo0},
        {"xray", 3, xray1}}) {
    try {
      set->read(modality, index);
      ADD_FAILURE() << modality << " " << index << " was read from a damaged shard";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(),
                  ::testing::HasSubstr(file.string() + ": the pixels of sample 1 do not match "
                                                       "their checksum"));
    }
  }
  EXPECT_EQ(set->read("endoscopy", 0).pixels, fx.endo[0].pixels);
  EXPECT_EQ(set->read("xray", 2).pixels, fx.xray[2].pixels);
}

TEST(ShardWriter, SameContentGivesIdenticalBytes) {
  TempDir dir("shardwriter-bytes");
  auto xs = samples("xray", 3, 1, 1, 16, 16);
  for (const char* name : {"a.h5", "b.h5"}) {
    ShardWriter w(dir / name, {"xray", 4, 0, 0, "k"});
    for (const auto& s : xs) w.append(s);
    w.add_reject("/data/bad.png", "corrupt");
    w.commit();
  }
  EXPECT_EQ(fs::checksum_file(dir / "a.h5"), fs::checksum_file(dir / "b.h5"));
}

TEST(ShardWriter, NothingVisibleWithoutCommit) {
  TempDir dir("shardwriter-abort");
  {
    ShardWriter w(dir / "xray/shard-00000.h5", {"xray", 4, 0, 0, ""});
    w.append(make_sample("xray", 0, 1, 1, 8, 8));
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir / "xray"));
}

TEST(ShardWriter, RejectsMismatchedSamples) {
  TempDir dir("shardwriter-mismatch");
  ShardWriter w(dir / "s.h5", {"xray", 4, 0, 0, ""});
  w.append(make_sample("xray", 0, 1, 1, 8, 8));
  EXPECT_THROW(w.append(make_sample("xray", 1, 1, 1, 8, 9)), Error);
  EXPECT_THROW(w.append(make_sample("ct", 1, 1, 1, 8, 8)), Error);
  auto bad = make_sample("xray", 2, 1, 1, 8, 8);
  bad.pixels.pop_back();
  EXPECT_THROW(w.append(bad), Error);
  EXPECT_THROW(ShardWriter(dir / "t.h5", {"xray", 10, 0, 0, ""}), Error);
}

TEST(ShardWriter, AllRejectedShardIsEmptyAndSkippedByReader) {
  TempDir dir("shardwriter-empty");
  {
    ShardWriter w(dir / "xray/shard-00001.h5", {"xray", 4, 2, 2, "k"});
    w.add_reject("/a.png", "truncated");
    w.add_reject("/b.png", "constant image");
    w.commit();
  }
  auto md = read_shard_metadata(dir / "xray/shard-00001.h5");
  EXPECT_EQ(md.count, 0);
  EXPECT_EQ(md.rows, 2);
  EXPECT_EQ(md.rejected_sources, std::vector<std::string>({"/a.png", "/b.png"}));
  EXPECT_EQ(md.rejected_reasons, std::vector<std::string>({"truncated", "constant image"}));
  auto xs = samples("xray", 2, 1, 1, 8, 8);
  auto entries = testing::write_shards(dir.path(), xs, 2, 4);  // shard-00000
  entries.push_back(describe_shard(dir.path(), "xray/shard-00001.h5"));
  auto index = build_index(entries, {});
  EXPECT_EQ(index["modalities"]["xray"]["count"], 2);
  EXPECT_EQ(index["modalities"]["xray"]["rejected"], 2);
  write_index(dir.path(), index);
  auto set = ShardSet::open(dir.path());
  EXPECT_EQ(set->info("xray").count, 2);
  EXPECT_EQ(set->read("xray", 1).pixels, xs[1].pixels);
}

TEST(ShardSet, RefusesBadIndexes) {
  TempDir dir("shardset-bad");
  EXPECT_THROW(ShardSet::open(dir.path()), Error);  // no index.json
  Fixture fx;
  fx.write(dir.path());
  auto index = nlohmann::json::parse(fs::read_file(dir / "index.json"));
  auto broken = index;
  broken["format_version"] = 99;
  fs::write_atomic(dir / "index.json", broken.dump());
  try {
    ShardSet::open(dir.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("index.json"));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("format_version"));
  }
  std::filesystem::remove(dir / "xray/shard-00001.h5");
  fs::write_atomic(dir / "index.json", index.dump());
  try {
    ShardSet::open(dir.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("shard-00001.h5"));
  }
  // Shapes that differ within a modality cannot be indexed.
  auto other = samples("xray", 1, 1, 1, 9, 9);
  auto e1 = testing::write_shards(dir / "x", fx.xray, 5, 4);
  auto e2 = testing::write_shards(dir / "y", other, 5, 4);
  e2[0].shard = 1;
  e1.push_back(e2[0]);
  EXPECT_THROW(build_index(e1, {}), Error);
}

// Shard files found by fuzz_shard (tests/fuzz/corpus/shard/, after the byte that picks the
// fuzzer's index.json): a strings dataset that declares 2^41 elements, refused before anything
// is allocated for them, and metadata on which libhdf5 allocates 256 TB (in the reading child).
// Both are errors naming the file, from ShardSet::open and from read_shard_metadata.
TEST(ShardFormat, MutatedShardsFoundByTheFuzzerAreErrorsNamingTheFile) {
  TempDir dir("shard-fuzzed");
  Fixture fx;
  fx.write(dir.path());
  const auto shard = dir / "xray/shard-00000.h5";
  for (const std::string name : {"ids-declares-2e41-strings.bin", "libhdf5-allocates-256-TB.bin"}) {
    SCOPED_TRACE(name);
    const auto found = testing::source_dir() / "tests/fuzz/corpus/shard" / name;
    ASSERT_TRUE(std::filesystem::is_regular_file(found)) << found;
    fs::write_atomic(shard, fs::read_file(found).substr(1));
    for (const auto& read :
         std::vector<std::function<void()>>{[&] { (void)read_shard_metadata(shard); },
                                            [&] { (void)ShardSet::open(dir.path()); }}) {
      try {
        read();
        ADD_FAILURE() << "a mutated shard was read";
      } catch (const Error& e) {
        EXPECT_THAT(e.what(), ::testing::HasSubstr(shard.string() + ": "));
        if (name.rfind("ids-", 0) == 0) {
          EXPECT_THAT(e.what(), ::testing::HasSubstr("elements, more than the file's"));
        }
      }
    }
  }
}

// libhdf5 1.10 loops forever in H5Aread on this mutated file (found by fuzz_embeddings; the
// shard reader reads its attributes the same way): the first read, in a forked child, is stopped
// at its time limit, and the error names the file.
TEST(ShardFormat, AShardOnWhichLibhdf5LoopsIsAnErrorNamingItNotAHang) {
  TempDir dir("shard-loops");
  Fixture fx;
  fx.write(dir.path());
  const auto found =
      testing::source_dir() / "tests/fuzz/corpus/embeddings/libhdf5-loops-in-H5Aread.h5";
  ASSERT_TRUE(std::filesystem::is_regular_file(found)) << found;
  const auto shard = dir / "xray/shard-00000.h5";
  fs::write_atomic(shard, fs::read_file(found));
  const std::string expected =
      shard.string() + ": reading it with libhdf5 took longer than 1 s; stopped";
  try {
    (void)read_shard_metadata(shard, {1});
    ADD_FAILURE() << "a file libhdf5 loops on was read";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), expected);
  }
  try {  // the folder's child dies; one child per shard then names the file
    (void)ShardSet::open(dir.path(), {1});
    ADD_FAILURE() << "a file libhdf5 loops on was read";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), expected);
  }
}

TEST(ShardFormat, ReadableByH5py) {
  std::string py = m3ret::testing::python_with("h5py, numpy");
  if (py.empty()) GTEST_SKIP() << "no python3 with h5py";
  TempDir dir("shard-h5py");
  for (int level : {4, 0}) {
    auto xs = samples("endoscopy", 3, 3, 2, 8, 6);
    std::string name = "shard-" + std::to_string(level) + ".h5";
    ShardWriter w(dir / name, {"endoscopy", level, 64, 4, "key"});
    std::string expected;
    for (const auto& s : xs) {
      w.append(s);
      expected.append(s.pixels.begin(), s.pixels.end());
    }
    w.add_reject("/data/broken.mp4", "no video stream");
    w.commit();
    fs::write_atomic(dir / "expected.bin", expected);
    nlohmann::json want = {{"N", 3},
                           {"shape", {3, 2, 8, 6}},
                           {"clip", {2, 1}},  // all stored frames, stride 1
                           {"compression", level},
                           {"modality", "endoscopy"},
                           {"ids", {xs[0].id, xs[1].id, xs[2].id}},
                           {"labels", {"nodule", "cyst|mass", ""}},
                           {"rejected_sources", {"/data/broken.mp4"}}};
    fs::write_atomic(dir / "expected.json", want.dump());
    std::string out;
    int rc = testing::run_command(
        py + " " + (testing::source_dir() / "tests/sharding/check_shard_h5py.py").string() + " " +
            (dir / name).string() + " " + (dir / "expected.json").string() + " " +
            (dir / "expected.bin").string(),
        &out);
    EXPECT_EQ(rc, 0) << out;
  }
}

}  // namespace
}  // namespace m3ret::sharding
