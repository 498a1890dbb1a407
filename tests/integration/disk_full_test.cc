// A full disk under every writer of the pipeline (shard, embed, index build, eval): the verb
// fails with one error naming the file and the system's reason, leaves no temporary behind, and
// the artifact an earlier run wrote at the same path stays as it was. A real full file system:
// a small tmpfs the test mounts (root in a container; skipped, with the reason, otherwise).
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "test_util.h"

namespace m3ret {
namespace {

namespace stdfs = std::filesystem;

struct Outcome {
  int status;
  std::string output;
};

Outcome m3ret(const std::string& args) {
  const auto cmd = fmt::format("{} {} 2>&1", testing::m3ret_binary().string(), args);
  Outcome o;
  o.status = testing::run_command_outside_mpi(cmd, &o.output);
  return o;
}

// Every regular file under `dir` with its contents.
std::map<std::string, std::string> snapshot(const stdfs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : stdfs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file() || e.path().filename() == "filler") continue;
    std::ifstream in(e.path(), std::ios::binary);
    files[stdfs::relative(e.path(), dir).string()] =
        std::string(std::istreambuf_iterator<char>(in), {});
  }
  return files;
}

// A dataset and its raw-pixel embeddings on the ordinary disk, made once for the suite.
class DiskFull : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = std::make_unique<testing::TempDir>("disk_full");
    const auto b = base_->path();
    auto o =
        m3ret(fmt::format("synth --set synth.patients_per_class=2 "
                          "--set 'synth.modalities=[\"xray\",\"ct\"]' --out {}",
                          (b / "data").string()));
    ASSERT_EQ(o.status, 0) << o.output;
    o = m3ret(fmt::format("shard --manifest {} --out {}", (b / "data/manifest.csv").string(),
                          (b / "shards").string()));
    ASSERT_EQ(o.status, 0) << o.output;
    o = m3ret(fmt::format("embed --raw-pixels --shards {} --out {}", (b / "shards").string(),
                          (b / "e.h5").string()));
    ASSERT_EQ(o.status, 0) << o.output;
  }
  static void TearDownTestSuite() { base_.reset(); }

  void SetUp() override {
    dir_ = std::make_unique<testing::TempDir>("disk_full_mnt");
    mnt_ = dir_->path() / "mnt";
    stdfs::create_directories(mnt_);
    if (::mount("tmpfs", mnt_.c_str(), "tmpfs", 0, "size=2m") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno) << ")";
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) ::umount2(mnt_.c_str(), MNT_DETACH);
  }

  // Fills the tmpfs, then frees `spare` bytes, so that a writer starts and fails midway.
  void fill(size_t spare = 16 << 10) {
    const auto filler = mnt_ / "filler";
    {
      std::ofstream out(filler, std::ios::binary);
      std::vector<char> block(1 << 14, 'x');
      while (out.write(block.data(), static_cast<std::streamsize>(block.size()))) out.flush();
    }
    stdfs::resize_file(filler, stdfs::file_size(filler) - spare);
  }

  static void expect_disk_full_error(const Outcome& o, const std::string& names) {
    EXPECT_EQ(o.status, 1) << o.output;
    EXPECT_NE(o.output.find("m3ret: error"), std::string::npos) << o.output;
    EXPECT_NE(o.output.find(names), std::string::npos) << o.output;
    EXPECT_NE(o.output.find("No space left on device"), std::string::npos) << o.output;
  }

  static stdfs::path data() { return base_->path(); }

  static std::unique_ptr<testing::TempDir> base_;
  std::unique_ptr<testing::TempDir> dir_;
  stdfs::path mnt_;
  bool mounted_ = false;
};

std::unique_ptr<testing::TempDir> DiskFull::base_;

TEST_F(DiskFull, EmbedKeepsThePreviousEmbeddingsFile) {
  const auto out = mnt_ / "e.h5";
  const std::string args = fmt::format("embed --raw-pixels --shards {} --out {}",
                                       (data() / "shards").string(), out.string());
  ASSERT_EQ(m3ret(args).status, 0);
  const auto before = snapshot(mnt_);
  fill();
  expect_disk_full_error(m3ret(args), out.string());
  EXPECT_EQ(snapshot(mnt_), before);  // the earlier file, byte for byte, and no temporary
}

TEST_F(DiskFull, IndexBuildKeepsThePreviousIndex) {
  const auto out = mnt_ / "index";
  const std::string args = fmt::format("index build --type flat --embeddings {} --out {}",
                                       (data() / "e.h5").string(), out.string());
  ASSERT_EQ(m3ret(args).status, 0);
  const auto before = snapshot(mnt_);
  fill();
  expect_disk_full_error(m3ret(args + " --overwrite"), out.string());
  EXPECT_EQ(snapshot(mnt_), before);
}

TEST_F(DiskFull, EvalKeepsThePreviousReport) {
  const auto out = mnt_ / "report.json";
  const std::string args =
      fmt::format("eval --embeddings {} --out {}", (data() / "e.h5").string(), out.string());
  ASSERT_EQ(m3ret(args).status, 0);
  const auto before = snapshot(mnt_);
  ASSERT_TRUE(before.count("report.json"));
  fill(1 << 10);
  expect_disk_full_error(m3ret(args), (mnt_ / "report.").string());
  EXPECT_EQ(snapshot(mnt_), before);
}

TEST_F(DiskFull, ShardLeavesNoTemporaryAndResumesOnceThereIsSpace) {
  const auto out = mnt_ / "shards";
  const std::string args = fmt::format("shard --manifest {} --out {}",
                                       (data() / "data/manifest.csv").string(), out.string());
  fill(64 << 10);
  expect_disk_full_error(m3ret(args), out.string());
  for (const auto& [name, bytes] : snapshot(mnt_)) {
    EXPECT_EQ(name.find(".tmp"), std::string::npos) << "left behind: " << name;
  }
  stdfs::remove(mnt_ / "filler");
  auto o = m3ret(args);
  ASSERT_EQ(o.status, 0) << o.output;
  o = m3ret(fmt::format("embed --raw-pixels --shards {} --out {}", out.string(),
                        (mnt_ / "e.h5").string()));
  EXPECT_EQ(o.status, 0) << o.output;
}

}  // namespace
}  // namespace m3ret
