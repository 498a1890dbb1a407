// Exit codes of the m3ret binary: 0 success, 2 a usage error, 1 any other
// failure, each error on exactly one line of stderr (docs/pipeline.md).
#include <gtest/gtest.h>

#include <string>

#include "test_util.h"

namespace m3ret {
namespace {

// Runs m3ret; `err` gets its stderr only.
int m3ret(const std::string& args, std::string* err) {
  return testing::run_command(
      "{ " + testing::m3ret_binary().string() + " " + args + " 2>&1 >/dev/null; }", err);
}

size_t lines(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

TEST(CliConventions, UsageErrorsExitTwoWithOneLine) {
  testing::TempDir dir("cli");
  const std::string missing = (dir / "missing.csv").string();
  struct Case {
    std::string args, names;
  } cases[] = {
      {"shard --manifest " + missing + " --out " + (dir / "s").string(), missing},
      {"config --no-such-flag", "--no-such-flag"},
      {"config --config no-such-config", "no-such-config"},
      {"config --set train.no_such_key=1", "train.no_such_key"},
      {"config --set train.max_steps=abc", "train.max_steps"},
      {"model --input 0,32,32", "--input"},
      {"model --input 100000000,100000000,100000000", "2^50 voxels"},  // tokens would overflow
  };
  for (const auto& c : cases) {
    std::string err;
    EXPECT_EQ(m3ret(c.args, &err), 2) << c.args << "\n" << err;
    EXPECT_EQ(lines(err), 1u) << c.args << "\n" << err;
    EXPECT_NE(err.find("m3ret: usage error: "), std::string::npos) << err;
    EXPECT_NE(err.find(c.names), std::string::npos) << err;
  }
}

TEST(CliConventions, OtherFailuresExitOneAndSuccessAndHelpZero) {
  testing::TempDir dir("cli");
  std::string err;
  // A manifest that exists but is not one: a failure of the run, not of its usage.
  const std::string bad = (testing::source_dir() / "configs" / "demo.toml").string();
  EXPECT_EQ(m3ret("shard --manifest " + bad + " --out " + (dir / "s").string(), &err), 1) << err;
  EXPECT_EQ(lines(err), 1u) << err;
  EXPECT_NE(err.find("m3ret: error: "), std::string::npos) << err;
  EXPECT_EQ(m3ret("--help", &err), 0) << err;
  EXPECT_EQ(m3ret("config --keys", &err), 0) << err;
}

TEST(CliConventions, ListFlagsTakeCommasOrSpaces) {
  std::string spaces, commas;
  const std::string model =
      testing::m3ret_binary().string() + " model --preset tiny --json --input ";
  ASSERT_EQ(testing::run_command(model + "2 32 48", &spaces), 0) << spaces;
  ASSERT_EQ(testing::run_command(model + "2,32,48", &commas), 0) << commas;
  EXPECT_EQ(spaces, commas);
  EXPECT_NE(spaces.find("\"frames\": 2,"), std::string::npos) << spaces;
  EXPECT_NE(spaces.find("\"width\": 48"), std::string::npos) << spaces;
}

}  // namespace
}  // namespace m3ret
