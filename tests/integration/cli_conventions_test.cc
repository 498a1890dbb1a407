// Exit codes of the m3ret binary: 0 success, 2 a usage error, 1 any other
// failure, each error on exactly one line of stderr (docs/pipeline.md).
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

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

// Every verb of `m3ret --help` takes --config and --set, except the three that
// docs/pipeline.md names (export, orchestrate, status), which take neither.
TEST(CliConventions, EveryVerbTakesConfigAndSetExceptTheThreeTheDocsName) {
  const std::string m3 = testing::m3ret_binary().string() + " ";
  std::string help;
  ASSERT_EQ(testing::run_command(m3 + "--help", &help), 0) << help;
  std::vector<std::string> verbs;
  std::istringstream lines_of(help.substr(help.find("Subcommands:")));
  for (std::string line; std::getline(lines_of, line);) {
    std::smatch m;
    if (std::regex_search(line, m, std::regex("^  ([a-z-]+)  "))) verbs.push_back(m[1]);
  }
  EXPECT_GE(verbs.size(), 15u) << help;
  const std::set<std::string> without = {"export", "orchestrate", "status"};
  for (const auto& verb : verbs) {
    const std::string args = verb == "index" ? "index build" : verb;
    std::string out;
    ASSERT_EQ(testing::run_command(m3 + args + " --help", &out), 0) << args << "\n" << out;
    const bool takes = without.count(verb) == 0;
    EXPECT_EQ(out.find("--config") != std::string::npos, takes) << args << "\n" << out;
    EXPECT_EQ(out.find("--set") != std::string::npos, takes) << args << "\n" << out;
  }
}

// Floats print as written, in `config --keys` and in the resolved config.
TEST(CliConventions, FloatsPrintAsWritten) {
  const std::string config = testing::m3ret_binary().string() + " config --set train.lr=0.9";
  std::string keys, toml;
  ASSERT_EQ(testing::run_command(config + " --keys", &keys), 0) << keys;
  EXPECT_NE(keys.find("train.lr = 0.9 "), std::string::npos) << keys;
  ASSERT_EQ(testing::run_command(config, &toml), 0) << toml;
  EXPECT_NE(toml.find("lr = 0.9\n"), std::string::npos) << toml;
  for (const auto& out : {keys, toml}) EXPECT_EQ(out.find("0.9000000"), std::string::npos) << out;
}

// `embed --modalities xray,ct` (as docs/pipeline.md writes it) keeps both
// modalities, as the repeated flag does; a comma is never part of a name.
TEST(CliConventions, EmbedModalitiesTakeCommas) {
  testing::TempDir dir("cli");
  const std::string m3 = testing::m3ret_binary().string() + " ";
  const std::string data = (dir / "data").string(), shards = (dir / "shards").string();
  std::string log;
  ASSERT_EQ(
      testing::run_command(m3 + "synth --out " + data + " --set synth.patients_per_class=1", &log),
      0)
      << log;
  ASSERT_EQ(
      testing::run_command(m3 + "shard --manifest " + data + "/manifest.csv --out " + shards, &log),
      0)
      << log;
  for (const char* flags : {"--modalities xray,ct", "--modalities xray --modalities ct"}) {
    const std::string emb = (dir / "e.h5").string(), report = (dir / "r.json").string();
    ASSERT_EQ(
        testing::run_command(
            m3 + "embed --raw-pixels --shards " + shards + " --out " + emb + " " + flags, &log),
        0)
        << flags << "\n"
        << log;
    ASSERT_EQ(
        testing::run_command(
            m3 + "eval --set eval.split='\"\"' --embeddings " + emb + " --out " + report, &log),
        0)
        << flags << "\n"
        << log;
    std::ifstream in(report);
    const auto j = nlohmann::json::parse(in);
    std::set<std::string> got;
    for (const auto& row : j.at("encoders").begin().value().at("per_modality").items())
      got.insert(row.key());
    EXPECT_EQ(got, (std::set<std::string>{"ct", "xray"})) << flags;
  }
}

}  // namespace
}  // namespace m3ret
