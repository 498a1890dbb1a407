// data/split.h: patient-level train/val/test splits.
#include "data/split.h"

#include <map>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"

namespace m3ret::data {
namespace {

using ::testing::HasSubstr;

// `groups` groups of `per_group` rows each; group g has label labels[g % labels.size()].
std::vector<ManifestRow> rows_of(int groups, int per_group,
                                 const std::vector<std::string>& labels) {
  std::vector<ManifestRow> rows;
  for (int g = 0; g < groups; ++g) {
    for (int i = 0; i < per_group; ++i) {
      ManifestRow r;
      r.path = "/d/p" + std::to_string(g) + "_" + std::to_string(i) + ".png";
      r.modality = "xray";
      if (!labels.empty()) r.labels = {labels[g % labels.size()]};
      r.group = "patient" + std::to_string(g);
      r.line = static_cast<int64_t>(rows.size()) + 2;
      rows.push_back(r);
    }
  }
  return rows;
}

std::map<std::string, std::string> split_of_group(const std::vector<ManifestRow>& rows) {
  std::map<std::string, std::string> out;
  for (const auto& r : rows) {
    auto [it, fresh] = out.emplace(r.group, r.split);
    EXPECT_EQ(it->second, r.split) << "group " << r.group << " straddles splits";
  }
  return out;
}

std::map<std::string, int> count_groups(const std::vector<ManifestRow>& rows) {
  std::map<std::string, int> n;
  for (const auto& [g, s] : split_of_group(rows)) ++n[s];
  return n;
}

TEST(Split, GroupsNeverStraddleAndRatiosHold) {
  auto rows = rows_of(200, 3, {});
  assign_splits(rows, SplitOptions{{0.7, 0.2, 0.1}, 5, false}, "m.csv");
  const auto n = count_groups(rows);
  EXPECT_NEAR(n.at("train"), 140, 1);
  EXPECT_NEAR(n.at("val"), 40, 1);
  EXPECT_NEAR(n.at("test"), 20, 1);
  for (const auto& r : rows) EXPECT_FALSE(r.split.empty());
}

TEST(Split, DeterministicForASeedDifferentAcrossSeeds) {
  auto a = rows_of(100, 2, {"x", "y"});
  auto b = a;
  auto c = a;
  assign_splits(a, SplitOptions{{0.8, 0.1, 0.1}, 1, true}, "m.csv");
  assign_splits(b, SplitOptions{{0.8, 0.1, 0.1}, 1, true}, "m.csv");
  assign_splits(c, SplitOptions{{0.8, 0.1, 0.1}, 2, true}, "m.csv");
  EXPECT_EQ(split_of_group(a), split_of_group(b));
  EXPECT_NE(split_of_group(a), split_of_group(c));
  // Row order does not matter, only the groups.
  std::reverse(b.begin(), b.end());
  assign_splits(b, SplitOptions{{0.8, 0.1, 0.1}, 1, true}, "m.csv");
  EXPECT_EQ(split_of_group(a), split_of_group(b));
}

TEST(Split, StratifiedCoversEveryLabelInEverySplit) {
  // 4 labels x 10 groups: each label has 8/1/1 groups; unstratified, some seed leaves a label out.
  const std::vector<std::string> labels = {"a", "b", "c", "d"};
  bool unstratified_missed = false;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    for (bool stratify : {true, false}) {
      auto rows = rows_of(40, 2, labels);
      assign_splits(rows, SplitOptions{{0.8, 0.1, 0.1}, seed, stratify}, "m.csv");
      std::map<std::string, std::map<std::string, std::set<std::string>>>
          groups;  // split->label->groups
      for (const auto& r : rows) groups[r.split][r.labels[0]].insert(r.group);
      bool all = true;
      for (const char* s : {"train", "val", "test"}) {
        for (const auto& l : labels) all = all && groups[s].count(l) > 0;
      }
      if (!stratify) {
        unstratified_missed = unstratified_missed || !all;
        continue;
      }
      EXPECT_TRUE(all) << "seed " << seed;
      for (const auto& l : labels) {
        EXPECT_EQ(groups["train"][l].size(), 8u);
        EXPECT_EQ(groups["val"][l].size(), 1u);
        EXPECT_EQ(groups["test"][l].size(), 1u);
      }
    }
  }
  EXPECT_TRUE(unstratified_missed) << "the input does not exercise stratification";
}

TEST(Split, SmallStratumStillReachesEverySplit) {
  auto rows = rows_of(3, 1, {"rare"});
  assign_splits(rows, SplitOptions{{0.8, 0.1, 0.1}, 0, true}, "m.csv");
  const auto n = count_groups(rows);
  EXPECT_EQ(n.at("train"), 1);
  EXPECT_EQ(n.at("val"), 1);
  EXPECT_EQ(n.at("test"), 1);
}

TEST(Split, ZeroRatioGetsNoGroups) {
  auto rows = rows_of(10, 1, {});
  assign_splits(rows, SplitOptions{{0.5, 0.5, 0.0}, 0, false}, "m.csv");
  const auto n = count_groups(rows);
  EXPECT_EQ(n.count("test"), 0u);
  EXPECT_EQ(n.at("train"), 5);
}

TEST(Split, Errors) {
  auto rows = rows_of(4, 1, {});
  rows[2].group.clear();
  try {
    assign_splits(rows, SplitOptions{}, "m.csv");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("m.csv:4: row /d/p2_0.png has no group"));
  }
  std::vector<ManifestRow> none;
  EXPECT_THROW(assign_splits(none, SplitOptions{}, "m.csv"), Error);
  try {
    parse_ratios("0.8,0.1,0.2");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("sum to 1.1"));
  }
  try {
    parse_ratios("1.2,-0.1,-0.1");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("ratio -0.1 is negative"));
  }
  EXPECT_THROW(parse_ratios("0.8,0.2"), Error);
  EXPECT_THROW(parse_ratios("0.8,x,0.2"), Error);
  const auto r = parse_ratios("0.6, 0.2 ,0.2");
  EXPECT_DOUBLE_EQ(r[1], 0.2);
}

}  // namespace
}  // namespace m3ret::data
