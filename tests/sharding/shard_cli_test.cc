// `m3ret shard` as a process: SIGKILLed mid-run (twice) and started again with
// the same arguments, it keeps the complete shards, redoes the rest and ends
// with exactly the files of an uninterrupted run; no incomplete file is ever
// visible under a final name. Shards cut by bytes; a changed cut removes the
// shards of the old one.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "sharding/shard_format.h"
#include "sharding/shard_set.h"
#include "test_util.h"

namespace m3ret::sharding {
namespace {

namespace stdfs = std::filesystem;

std::string bin() { return m3ret::testing::m3ret_binary().string(); }

// One row per shard and one decoding thread: a slow, many-shard run to kill.
std::string shard_args(const stdfs::path& data, const stdfs::path& out,
                       const std::string& extra = "") {
  return fmt::format(
      " shard --manifest {}/manifest.csv --out {} --set shard.samples_per_shard=1"
      " --set shard.threads=1 --set preprocess.image_size=96{}",
      data.string(), out.string(), extra);
}

class ShardCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new m3ret::testing::TempDir("shard-cli");
    const std::string cmd =
        bin() + " synth --out " + (dir_->path() / "data").string() +
        " --set 'synth.modalities=[\"xray\", \"ultrasound\"]' --set synth.patients_per_class=3"
        " --set synth.samples_per_patient=3 2>&1";
    ok_ = m3ret::testing::run_command(cmd, &log_) == 0;
  }
  static void TearDownTestSuite() { delete dir_; }
  static stdfs::path dir() { return dir_->path(); }

  static m3ret::testing::TempDir* dir_;
  static bool ok_;
  static std::string log_;
};
m3ret::testing::TempDir* ShardCli::dir_ = nullptr;
bool ShardCli::ok_ = false;
std::string ShardCli::log_;

// Every regular file under dir (relative path -> checksum).
std::map<std::string, std::string> files(const stdfs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : stdfs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file())
      out[stdfs::relative(e.path(), dir).string()] = fs::checksum_file(e.path());
  }
  return out;
}

std::vector<stdfs::path> final_shards(const stdfs::path& dir) {
  std::vector<stdfs::path> out;
  if (!stdfs::exists(dir)) return out;
  for (const auto& e : stdfs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().extension() == ".h5") out.push_back(e.path());
  }
  return out;
}

// Starts `m3ret ARGS` and SIGKILLs it as soon as `at_least` shards are under
// their final names. Returns false if it finished before that.
bool run_and_kill(const std::string& args, const stdfs::path& out, size_t at_least) {
  const std::string cmd = "exec " + bin() + args + " > /dev/null 2>&1";
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  // Polls the condition (shards under their final names, or the child gone):
  // another process's files have no notification to wait on here.
  while (final_shards(out).size() < at_least) {
    if (waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

TEST_F(ShardCli, KilledRunsResumeToTheUninterruptedResult) {
  ASSERT_TRUE(ok_) << log_;
  const auto data = dir() / "data";
  const auto whole = dir() / "whole";
  std::string log;
  ASSERT_EQ(m3ret::testing::run_command(bin() + shard_args(data, whole) + " 2>&1", &log), 0) << log;
  const auto want = files(whole);
  const auto index = nlohmann::json::parse(fs::read_file(whole / "index.json"));
  const int64_t shards = int64_t(index.at("modalities").at("xray").at("shards").size() +
                                 index.at("modalities").at("ultrasound").at("shards").size());
  ASSERT_GE(shards, 20);

  const auto out = dir() / "killed";
  for (size_t at_least : {size_t(1), size_t(shards / 2)}) {
    ASSERT_TRUE(run_and_kill(shard_args(data, out), out, at_least))
        << "m3ret shard finished before it could be killed";
    EXPECT_FALSE(stdfs::exists(out / "index.json")) << "a killed run must not look complete";
    // Whatever is under a final name is a complete shard, identical to the
    // uninterrupted run's.
    const auto visible = final_shards(out);
    EXPECT_GE(visible.size(), at_least);
    EXPECT_LT(visible.size(), size_t(shards));
    for (const auto& p : visible) {
      const std::string rel = stdfs::relative(p, out).string();
      EXPECT_NO_THROW(read_shard_metadata(p)) << rel;
      ASSERT_TRUE(want.count(rel)) << rel;
      EXPECT_EQ(fs::checksum_file(p), want.at(rel)) << rel << " differs from the uninterrupted run";
    }
  }
  const size_t kept = final_shards(out).size();
  ASSERT_EQ(m3ret::testing::run_command(bin() + shard_args(data, out) + " 2>&1", &log), 0) << log;
  EXPECT_NE(log.find(fmt::format("{} written, {} kept", shards - int64_t(kept), kept)),
            std::string::npos)
      << log;
  EXPECT_EQ(files(out), want);  // same bytes, and no temporary file left
}

TEST_F(ShardCli, CutsShardsByBytesAndRemovesTheOldCut) {
  ASSERT_TRUE(ok_) << log_;
  const auto data = dir() / "data";
  const auto out = dir() / "by-bytes";
  std::string log;
  // One row per shard first, then 2.5 samples' worth of bytes per shard (2 rows).
  ASSERT_EQ(m3ret::testing::run_command(bin() + shard_args(data, out) + " 2>&1", &log), 0) << log;
  const size_t before = final_shards(out).size();
  const std::string bytes = fmt::format(
      " --set shard.samples_per_shard=1000 --set shard.shard_bytes={}", 96 * 96 * 5 / 2);
  ASSERT_EQ(m3ret::testing::run_command(bin() + shard_args(data, out, bytes) + " 2>&1", &log), 0)
      << log;
  auto index = nlohmann::json::parse(fs::read_file(out / "index.json"));
  EXPECT_EQ(index.at("shard").at("shard_bytes").get<int64_t>(), 96 * 96 * 5 / 2);
  size_t listed = 0;
  for (const auto& m : {"xray", "ultrasound"}) {
    const auto& jm = index.at("modalities").at(m);
    const int64_t count = jm.at("count").get<int64_t>();
    ASSERT_GT(count, 2);
    EXPECT_EQ(int64_t(jm.at("shards").size()), (count + 1) / 2) << m;
    for (const auto& js : jm.at("shards")) EXPECT_LE(js.at("count").get<int64_t>(), 2);
    listed += jm.at("shards").size();
  }
  EXPECT_LT(listed, before);
  EXPECT_EQ(final_shards(out).size(), listed) << "shards of the old cut must be removed";
  auto set = ShardSet::open(out);
  EXPECT_EQ(set->info("xray").H, 96);
}

// Shards are never silently rewritten from another manifest: refused (naming
// the folder, its manifest and both choices) with nothing touched, also when
// the earlier run did not finish (no index.json); --overwrite deletes them and
// cuts the new ones; a run of the same manifest resumes as before.
TEST_F(ShardCli, ShardsOfAnotherManifestAreRefusedUnlessOverwrite) {
  ASSERT_TRUE(ok_) << log_;
  const auto data = dir() / "data";
  const auto out = dir() / "two-manifests";
  const std::string quick = " --set shard.samples_per_shard=8";
  std::string log;
  ASSERT_EQ(m3ret::testing::run_command(bin() + shard_args(data, out, quick) + " 2>&1", &log), 0)
      << log;
  // Manifest B: the xray rows of A, in another file beside it (its paths are relative).
  const std::string a = fs::read_file(data / "manifest.csv");
  std::string b = a.substr(0, a.find('\n') + 1);
  for (size_t at = b.size(), end; at < a.size(); at = end + 1) {
    end = a.find('\n', at);
    const std::string line = a.substr(at, end - at);
    if (line.find(",xray,") != std::string::npos) b += line + "\n";
  }
  const auto b_path = data / "xray-only.csv";
  fs::write_atomic(b_path, b);
  auto shard_b = [&](const std::string& extra) {
    std::string args = shard_args(data, out, quick + extra);
    const std::string a_path = (data / "manifest.csv").string();
    return args.replace(args.find(a_path), a_path.size(), b_path.string());
  };
  const auto want = files(out);
  for (bool complete : {true, false}) {
    if (!complete) stdfs::remove(out / "index.json");  // as a run killed midway leaves it
    EXPECT_EQ(m3ret::testing::run_command(bin() + shard_b("") + " 2>&1", &log), 1);
    EXPECT_NE(log.find(out.string() + " already holds shards cut from another manifest, " +
                       (data / "manifest.csv").string()),
              std::string::npos)
        << log;
    EXPECT_NE(log.find("start over in a new --out or with --overwrite"), std::string::npos) << log;
    auto now = want;
    if (!complete) now.erase("index.json");
    EXPECT_EQ(files(out), now) << "nothing touched";
  }
  ASSERT_EQ(m3ret::testing::run_command(bin() + shard_b(" --overwrite") + " 2>&1", &log), 0) << log;
  auto index = nlohmann::json::parse(fs::read_file(out / "index.json"));
  EXPECT_EQ(index.at("manifest"), b_path.string());
  EXPECT_FALSE(index.at("modalities").contains("ultrasound"));
  EXPECT_FALSE(stdfs::exists(out / "ultrasound")) << "the other manifest's shards are deleted";
  // The same manifest again: resumed, every shard kept.
  ASSERT_EQ(m3ret::testing::run_command(bin() + shard_b("") + " 2>&1", &log), 0) << log;
  EXPECT_NE(log.find("(0 written, "), std::string::npos) << log;
}

// A manifest whose every row is refused is a failure: exit 1 with the count of
// rows and where the reasons are (rejects.csv, written all the same).
TEST_F(ShardCli, EveryRowRejectedIsAFailure) {
  const auto data = dir() / "rejected";
  stdfs::create_directories(data);
  std::ofstream(data / "broken.png") << "not a png";
  std::ofstream(data / "manifest.csv")
      << "path,modality,labels,group,split\n"
         "broken.png,xray,a,p1,train\nmissing.png,xray,b,p2,train\n";
  const auto out = dir() / "rejected-shards";
  std::string log;
  const std::string cmd = bin() + " shard --manifest " + (data / "manifest.csv").string() +
                          " --out " + out.string() + " 2>&1";
  EXPECT_EQ(m3ret::testing::run_command(cmd, &log), 1) << log;
  EXPECT_NE(log.find("all 2 rows of " + (data / "manifest.csv").string() + " were rejected"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find((out / "rejects.csv").string()), std::string::npos) << log;
  EXPECT_NE(fs::read_file(out / "rejects.csv").find("missing.png,xray,3,"), std::string::npos);
  // An empty manifest fails the same way.
  std::ofstream(data / "manifest.csv") << "path,modality,labels,group,split\n";
  EXPECT_EQ(m3ret::testing::run_command(cmd, &log), 1) << log;
  EXPECT_NE(log.find("has no rows"), std::string::npos) << log;
}

// A truncated DICOM (GDCM aborts on it) costs its row, not the run: the other
// rows shard and the refusal names the file with the reason.
TEST_F(ShardCli, CorruptDicomCostsItsRowNotTheRun) {
  ASSERT_TRUE(ok_) << log_;
  stdfs::path dcm;
  for (const auto& e : stdfs::recursive_directory_iterator(dir() / "data")) {
    if (e.path().extension() == ".dcm" && (dcm.empty() || e.path() < dcm)) dcm = e.path();
  }
  ASSERT_FALSE(dcm.empty()) << "m3ret synth wrote no DICOM";
  const auto data = dir() / "corrupt-dicom";
  stdfs::create_directories(data);
  const std::string bytes = fs::read_file(dcm);
  std::ofstream(data / "cut.dcm", std::ios::binary) << bytes.substr(0, 1000);
  stdfs::copy_file(dcm, data / "good.dcm");
  std::ofstream(data / "manifest.csv") << "path,modality,labels,group,split\n"
                                          "good.dcm,xray,a,p1,train\ncut.dcm,xray,b,p2,train\n";
  const auto out = dir() / "corrupt-dicom-shards";
  std::string log;
  ASSERT_EQ(
      m3ret::testing::run_command(bin() + " shard --manifest " + (data / "manifest.csv").string() +
                                      " --out " + out.string() + " 2>&1",
                                  &log),
      0)
      << log;
  EXPECT_NE(log.find("2 rows -> 1 samples"), std::string::npos) << log;
  const std::string rejects = fs::read_file(out / "rejects.csv");
  EXPECT_NE(rejects.find((data / "cut.dcm").string() + ",xray,3,"), std::string::npos) << rejects;
  EXPECT_EQ(ShardSet::open(out)->info("xray").count, 1);
}

}  // namespace
}  // namespace m3ret::sharding
