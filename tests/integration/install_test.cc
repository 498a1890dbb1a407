// `cmake --install` into a temporary prefix: the installed m3ret runs, and
// `--config NAME` finds the configs installed beside it.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "test_util.h"

namespace m3ret {
namespace {

namespace stdfs = std::filesystem;

std::string slurp(const stdfs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class Install : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("install");
    prefix_ = dir_->path() / "prefix";
    const stdfs::path build = testing::m3ret_binary().parent_path();
    rc_ = testing::run_command(
        "cmake --install " + build.string() + " --prefix " + prefix_.string(), &log_);
  }
  static void TearDownTestSuite() { delete dir_; }
  // Runs the installed binary from a folder outside the source and build trees.
  static int run(const std::string& args, std::string* out) {
    return testing::run_command("cd " + dir_->path().string() + " && " +
                                    (prefix_ / "bin" / "m3ret").string() + " " + args + " 2>&1",
                                out);
  }

  static testing::TempDir* dir_;
  static stdfs::path prefix_;
  static std::string log_;
  static int rc_;
};
testing::TempDir* Install::dir_ = nullptr;
stdfs::path Install::prefix_;
std::string Install::log_;
int Install::rc_ = -1;

TEST_F(Install, PutsTheBinaryConfigsSlurmTemplatesAndDocsUnderThePrefix) {
  ASSERT_EQ(rc_, 0) << log_;
  for (const char* f :
       {"bin/m3ret", "bin/m3ret-node", "share/m3ret/configs/demo.toml",
        "share/m3ret/configs/learning.toml", "share/m3ret/configs/learning-texture.toml",
        "share/m3ret/configs/sweeps/tiny.toml", "share/m3ret/slurm/pretrain.sbatch",
        "share/m3ret/python/m3ret_plots.py", "share/m3ret/python/m3ret_encoder.py",
        "share/doc/m3ret/README.md", "share/doc/m3ret/pipeline.md"}) {
    EXPECT_TRUE(stdfs::is_regular_file(prefix_ / f)) << f << "\n" << log_;
  }
  const auto perms = stdfs::status(prefix_ / "bin" / "m3ret").permissions();
  EXPECT_NE(perms & stdfs::perms::owner_exec, stdfs::perms::none);
}

TEST_F(Install, InstalledBinaryRunsItsHelpAndListsTheConfigKeys) {
  ASSERT_EQ(rc_, 0) << log_;
  std::string out;
  ASSERT_EQ(run("demo --help", &out), 0) << out;
  EXPECT_NE(out.find("--out"), std::string::npos) << out;
  ASSERT_EQ(run("config --keys", &out), 0) << out;
  EXPECT_NE(out.find("train.max_steps"), std::string::npos) << out;
}

TEST_F(Install, ConfigByNameIsTheInstalledOne) {
  ASSERT_EQ(rc_, 0) << log_;
  // Mark the installed copy so that the source tree's configs/learning.toml cannot pass.
  const stdfs::path installed = prefix_ / "share/m3ret/configs/learning.toml";
  std::string text = slurp(installed);
  const auto at = text.find("seed = 11");
  ASSERT_NE(at, std::string::npos) << "configs/learning.toml no longer sets synth.seed = 11";
  text.replace(at, 9, "seed = 4242");
  std::ofstream(installed) << text;
  std::string out;
  for (const char* name : {"learning", "learning.toml"}) {
    ASSERT_EQ(run(std::string("config --config ") + name, &out), 0) << out;
    EXPECT_NE(out.find("seed = 4242"), std::string::npos) << name << "\n" << out;
  }
  // The texture benchmark's `base = "learning.toml"` is found beside it, in the prefix.
  ASSERT_EQ(run("config --config learning-texture", &out), 0) << out;
  EXPECT_NE(out.find("seed = 4242"), std::string::npos) << out;
  EXPECT_NE(out.find("lesion_shape = 'cylinder'"), std::string::npos) << out;
  EXPECT_NE(run("config --config no-such-config", &out), 0);
  EXPECT_NE(out.find("'no-such-config'"), std::string::npos) << out;
  EXPECT_NE(out.find((prefix_ / "share/m3ret/configs").string()), std::string::npos) << out;
  EXPECT_NE(run("config --config ./no-such-config.toml", &out), 0);
  EXPECT_NE(out.find("does not exist"), std::string::npos) << out;
}

}  // namespace
}  // namespace m3ret
