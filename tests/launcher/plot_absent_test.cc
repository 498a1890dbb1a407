// Empty is not zero in the charts: a modality with no evaluable query adds no
// point to the scaling charts, and the recall-vs-step line is the mean over
// the evaluated modalities only (no point at a step where none was).
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "eval/report.h"
#include "launcher/orchestrator/orchestrator.h"
#include "launcher/orchestrator/report.h"
#include "orchestrator_fakes.h"
#include "test_util.h"

namespace m3ret::orchestrator {
namespace {

using testing::FakeRow;
using testing::TempDir;

const nlohmann::json& chart(const nlohmann::json& data, const std::string& file) {
  for (const auto& p : data.at("plots"))
    if (p.at("file").get<std::string>() == file) return p;
  throw std::runtime_error("no chart " + file + " in " + data.dump());
}

// x -> y of the series `label` of a chart; empty when there is no such series.
std::map<double, double> points(const nlohmann::json& c, const std::string& label) {
  std::map<double, double> out;
  for (const auto& s : c.at("series"))
    if (s.at("label").get<std::string>() == label)
      for (const auto& p : s.at("points")) out[p.at("x")] = p.at("y");
  return out;
}

TEST(ReportAbsent, AbsentModalitiesAreNeitherPlottedNorAveragedAsZero) {
  TempDir dir("plot-absent");
  State st(dir / "s.db");
  // Rows of `m3ret eval` reports through the orchestrator's reader; queries = 0 is absent.
  auto evaluate = [&](const std::string& run, int64_t step, const std::vector<FakeRow>& rows) {
    const auto file = dir / fmt::format("{}-{}.json", run, step);
    std::ofstream(file) << eval::to_json(testing::fake_report(rows)).dump();
    st.set_evaluations(run, step, read_evaluations(file, run, step));
  };
  for (const auto& [name, frac] : {std::pair<std::string, double>{"r000", 0.25}, {"r001", 1.0}}) {
    const nlohmann::json params = {{"data_fraction", fmt::format("{:g}", frac)}};
    st.upsert_run({name, params.dump(), frac, "run-" + name, "shards", RunState::kSucceeded, 0});
  }
  // r000: mri never evaluable; r001: nothing evaluable at step 10, both at step 20.
  evaluate("r000", 10, {{"xray", 8, 0.4, 0.9, 0.4}, {"mri", 0, 0, 0, 0}});
  evaluate("r000", 20, {{"xray", 8, 0.6, 0.9, 0.4}, {"mri", 0, 0, 0, 0}});
  evaluate("r001", 10, {{"xray", 0, 0, 0, 0}, {"mri", 0, 0, 0, 0}});
  evaluate("r001", 20, {{"xray", 8, 0.7, 0.9, 0.4}, {"mri", 4, 0.5, 0.75, 0.3}});

  const auto data = plot_data(st);
  const auto& frac = chart(data, "recall_vs_data_fraction.png");
  EXPECT_EQ(points(frac, "xray"), (std::map<double, double>{{0.25, 0.6}, {1.0, 0.7}})) << frac;
  EXPECT_EQ(points(frac, "mri"), (std::map<double, double>{{1.0, 0.5}})) << frac;
  const auto mean = points(frac, "mean");
  ASSERT_EQ(mean.size(), 2u) << frac;
  EXPECT_DOUBLE_EQ(mean.at(0.25), 0.6) << "xray alone, not (0.6 + 0) / 2";
  EXPECT_DOUBLE_EQ(mean.at(1.0), 0.6);

  const auto& step = chart(data, "recall_vs_step.png");
  const auto quarter = points(step, "data_fraction=0.25");
  ASSERT_EQ(quarter.size(), 2u) << step;
  EXPECT_DOUBLE_EQ(quarter.at(10), 0.4);
  EXPECT_DOUBLE_EQ(quarter.at(20), 0.6);
  const auto full = points(step, "data_fraction=1");
  ASSERT_EQ(full.size(), 1u) << "no point at step 10, where nothing was evaluable: " << step;
  EXPECT_DOUBLE_EQ(full.at(20), 0.6);
  for (const auto& c : data.at("plots"))
    for (const auto& s : c.at("series"))
      for (const auto& p : s.at("points")) EXPECT_GT(p.at("y").get<double>(), 0) << c;
}

}  // namespace
}  // namespace m3ret::orchestrator
