// configs/sweeps/tiny.toml end to end with the REAL pipeline: `m3ret
// orchestrate --backend local` runs `m3ret synth`, `mpiexec m3ret shard` per
// data fraction, `mpiexec m3ret train` per sweep point and `mpiexec m3ret
// embed` + `m3ret eval` of every checkpoint, then writes the scaling report.
// The test checks that report (CSV, Markdown, SVG): a row per sweep point and
// modality with its recall, and every checkpoint evaluated. The same sweep
// also runs through the Slurm backend on a real one-node Slurm.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "launcher/orchestrator/state.h"
#include "launcher/orchestrator/sweep.h"
#include "launcher/process.h"
#include "slurm_fixture.h"
#include "test_util.h"

namespace m3ret {
namespace {

namespace fs = std::filesystem;
using namespace orchestrator;
using launcher::run_capture;

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (char c : line) {
    if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

// Runs the tiny sweep with `backend` in `dir` and checks the report.
void run_tiny_sweep_and_check_the_report(const fs::path& dir, const std::string& backend) {
  const fs::path sweep_file = testing::source_dir() / "configs/sweeps/tiny.toml";
  const Sweep sweep = load_sweep(sweep_file);  // for the run names
  ASSERT_GE(sweep.runs.size(), 2u);
  // work_dir = "sweep-tiny" is relative to the current directory: run in the temp dir.
  std::string cmd = "cd " + launcher::shell_line({dir.string()}) + " && exec " +
                    launcher::shell_line({testing::m3ret_binary().string(), "orchestrate",
                                          "--sweep", sweep_file.string(), "--backend", backend,
                                          "--no-server", "--poll", "0.5"}) +
                    " 2>&1";
  auto r = run_capture({"sh", "-c", cmd});
  const fs::path work = dir / "sweep-tiny";
  ASSERT_EQ(r.status, 0) << r.out << "\n(job logs under " << (work / "jobs").string() << ")";

  // Every run succeeded with at least 2 checkpoints, each evaluated.
  State st(work / "state.db", true);
  for (const auto& run : st.runs()) {
    EXPECT_EQ(run.state, "succeeded") << run.name;
    auto cks = st.checkpoints(run.name);
    EXPECT_GE(cks.size(), 2u) << run.name;
    std::set<int64_t> evaluated;
    for (const auto& e : st.evaluations(run.name)) evaluated.insert(e.step);
    EXPECT_EQ(evaluated.size(), cks.size()) << run.name;
  }

  // scaling.csv: one row per (sweep point, modality) with recall@1 in [0, 1].
  const std::set<std::string> modalities = {"xray", "ultrasound", "endoscopy", "ct", "mean"};
  std::ifstream csv(work / "report/scaling.csv");
  std::string line;
  ASSERT_TRUE(std::getline(csv, line));
  auto header = split_csv_line(line);
  auto col = [&](const std::string& name) {
    auto it = std::find(header.begin(), header.end(), name);
    return it == header.end() ? -1 : static_cast<int>(it - header.begin());
  };
  const int c_run = col("run"), c_mod = col("modality"), c_r1 = col("recall@1"),
            c_r5 = col("recall@5");
  ASSERT_TRUE(c_run >= 0 && c_mod >= 0 && c_r1 >= 0 && c_r5 >= 0) << line;
  EXPECT_GE(col("data_fraction"), 0) << line;
  std::map<std::string, std::map<std::string, double>> recall;  // run -> modality -> recall@1
  while (std::getline(csv, line)) {
    auto f = split_csv_line(line);
    ASSERT_EQ(f.size(), header.size()) << line;
    ASSERT_FALSE(f[c_r1].empty()) << "a sweep point without an evaluation: " << line;
    recall[f[c_run]][f[c_mod]] = std::stod(f[c_r1]);
    EXPECT_GE(std::stod(f[c_r5]), std::stod(f[c_r1])) << line;
  }
  EXPECT_EQ(recall.size(), sweep.runs.size());
  auto md = read(work / "report/scaling.md");
  for (const auto& run : sweep.runs) {
    ASSERT_TRUE(recall.count(run.name)) << run.name;
    for (const auto& m : modalities) {
      ASSERT_TRUE(recall[run.name].count(m)) << run.name << " has no " << m << " row";
      EXPECT_GE(recall[run.name][m], 0.0);
      EXPECT_LE(recall[run.name][m], 1.0);
    }
    EXPECT_NE(md.find("| " + run.name + " |"), std::string::npos) << run.name;
  }
  // The plots: only the swept axes (data fraction; the seeds are error bars):
  // recall vs data fraction (one line per modality and their mean, over both
  // fractions), recall vs step (one line per fraction, a point per checkpoint,
  // each over the 2 seeds).
  const auto data = nlohmann::json::parse(read(work / "report/plot_data.json"));
  ASSERT_EQ(data["plots"].size(), 2u) << data.dump(1);
  EXPECT_EQ(data["error_bars"], "min-max over train.seed");
  const auto& frac = data["plots"][0];
  EXPECT_EQ(frac["file"], "recall_vs_data_fraction.png");
  EXPECT_EQ(frac["series"].size(), modalities.size())
      << frac.dump(1);  // the 4 modalities and "mean"
  for (const auto& s : frac["series"]) EXPECT_EQ(s["points"].size(), 2u) << s.dump();
  const auto& steps = data["plots"][1];
  EXPECT_EQ(steps["file"], "recall_vs_step.png");
  ASSERT_EQ(steps["series"].size(), 2u) << steps.dump(1);
  for (const auto& s : steps["series"]) {
    ASSERT_EQ(s["points"].size(), 2u) << s.dump();
    for (const auto& p : s["points"]) EXPECT_EQ(p["n"], 2) << "two seeds per point: " << p.dump();
  }
  const auto plots = nlohmann::json::parse(read(work / "report/plots.json"));
  if (plots["skipped"].get<std::string>().empty()) {
    for (const char* png : {"recall_vs_data_fraction.png", "recall_vs_step.png"})
      EXPECT_EQ(read(work / "report" / png).substr(0, 8), "\x89PNG\r\n\x1a\n") << png;
  } else {
    EXPECT_NE(md.find("Plots skipped: " + plots["skipped"].get<std::string>()), std::string::npos)
        << md;
  }
  // The static status page stays after the orchestrator exited.
  const auto page = read(work / "report/status.html");
  for (const auto& run : sweep.runs) EXPECT_NE(page.find(run.name), std::string::npos) << run.name;
  EXPECT_NE(page.find("<th>data_fraction</th>"), std::string::npos);
}

TEST(TinySweep, RealPipelineReportsRecallPerModalityForEverySweepPoint) {
  testing::TempDir dir("tinysweep");
  run_tiny_sweep_and_check_the_report(dir.path(), "local");
}

// The same sweep through the Slurm backend on a real one-node Slurm: sbatch of
// the slurm/ templates, `mpirun` inside each allocation, the real binary.
// (Preemption, requeue and an orchestrator crash on Slurm: test_slurm_orchestrator.)
using TinySweepOnSlurm = testing::SlurmCluster;
TEST_F(TinySweepOnSlurm, RealPipelineReportsRecallPerModalityForEverySweepPoint) {
  run_tiny_sweep_and_check_the_report(dir_->path(), "slurm");
}

}  // namespace
}  // namespace m3ret
