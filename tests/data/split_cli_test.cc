// `m3ret split` through the binary.
#include <algorithm>
#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/fs.h"
#include "data/manifest.h"
#include "test_util.h"

namespace m3ret::data {
namespace {

namespace stdfs = std::filesystem;
using ::testing::HasSubstr;
using testing::run_command;

std::string bin() { return testing::m3ret_binary().string(); }

void write_input(const stdfs::path& csv, int groups, bool with_group = true) {
  std::string text = "path,modality,labels,group,split\n";
  for (int g = 0; g < groups; ++g) {
    for (int i = 0; i < 2; ++i) {
      text += "img/p" + std::to_string(g) + "_" + std::to_string(i) + ".png,xray," +
              (g % 2 ? "cat" : "dog") + "," + (with_group ? "P" + std::to_string(g) : "") + ",\n";
    }
  }
  fs::write_atomic(csv, text);
}

TEST(SplitCli, WritesTheSplitColumn) {
  testing::TempDir dir("split-cli");
  write_input(dir / "in.csv", 40);
  std::string out;
  ASSERT_EQ(run_command(bin() + " split --manifest " + (dir / "in.csv").string() + " --out " +
                            (dir / "out.csv").string() +
                            " --ratios 0.5,0.25,0.25 --seed 3 --stratify-by-label",
                        &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("wrote"));
  const auto rows = read_manifest(dir / "out.csv");
  ASSERT_EQ(rows.size(), 80u);
  std::map<std::string, std::map<std::string, int>> rows_per;  // split -> label -> rows
  std::map<std::string, std::string> split_of;
  for (const auto& r : rows) {
    ++rows_per[r.split][r.labels.at(0)];
    auto [it, fresh] = split_of.emplace(r.group, r.split);
    EXPECT_EQ(it->second, r.split) << r.group;
  }
  // 20 groups per label: 10/5/5 groups, 2 rows each.
  for (const char* l : {"cat", "dog"}) {
    EXPECT_EQ(rows_per["train"][l], 20);
    EXPECT_EQ(rows_per["val"][l], 10);
    EXPECT_EQ(rows_per["test"][l], 10);
  }
  // The input is untouched; the paths still resolve against the same folder.
  EXPECT_TRUE(read_manifest(dir / "in.csv").front().split.empty());
  EXPECT_EQ(rows.front().path, dir.path() / "img/p0_0.png");
}

TEST(SplitCli, ErrorsAreOneLineAndWriteNothing) {
  testing::TempDir dir("split-cli");
  write_input(dir / "in.csv", 4);
  write_input(dir / "nogroup.csv", 4, false);
  write_input(dir / "empty.csv", 0);
  const std::string out_csv = (dir / "out.csv").string();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--manifest " + (dir / "in.csv").string() + " --ratios 0.8,0.1,0.2", "sum to 1.1"},
      {"--manifest " + (dir / "in.csv").string() + " --ratios 1.1,-0.1,0",
       "ratio -0.1 is negative"},
      {"--manifest " + (dir / "nogroup.csv").string(), "nogroup.csv:2: row"},
      {"--manifest " + (dir / "empty.csv").string(), "empty.csv: the manifest has no rows"},
  };
  for (const auto& [args, message] : cases) {
    std::string out;
    EXPECT_EQ(run_command(bin() + " split " + args + " --out " + out_csv, &out), 1) << args;
    EXPECT_THAT(out, HasSubstr(message));
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
    EXPECT_FALSE(stdfs::exists(out_csv));
  }
}

}  // namespace
}  // namespace m3ret::data
