// The orchestrator on a REAL Slurm: a one-node cluster (munged, slurmctld,
// slurmd from Debian's slurm-wlm, started by slurm_cluster.sh under a temp
// dir and stopped at the end) runs a sweep of two runs through the Slurm
// backend (sbatch from slurm/ templates, squeue/scontrol, mpirun inside the
// allocation). One train job is preempted with `scancel --batch
// --signal=USR1` (checkpoint, exit 75, resubmitted with --resume auto), the
// other is requeued by Slurm (`scontrol requeue`), and the orchestrator is
// "killed" (its objects dropped mid-sweep, nothing flushed beyond SQLite's
// committed transactions) and started again. Every run must finish with all
// its checkpoints evaluated, and no job may have been submitted twice.
//
// Jobs run tests/integration/fake_m3ret.sh (the CLI forms, in seconds) unless
// M3RET_SLURM_JOB_BINARY names a real m3ret binary.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <thread>

#include "launcher/orchestrator/command.h"
#include "launcher/orchestrator/orchestrator.h"
#include "test_util.h"

namespace m3ret {
namespace {

namespace fs = std::filesystem;
using namespace orchestrator;

bool have(const std::string& prog) { return run_capture({"sh", "-c", "command -v " + prog}).status == 0; }

class SlurmCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* p : {"munged", "slurmctld", "slurmd", "sbatch", "mpirun"}) {
      if (!have(p)) GTEST_SKIP() << p << " is not installed (setup.sh installs slurm-wlm and munge)";
    }
    dir_ = std::make_unique<testing::TempDir>("slurm");
    script_ = (testing::source_dir() / "tests/integration/slurm_cluster.sh").string();
    auto r = run_capture({script_, "start", (dir_->path() / "cluster").string()});
    started_ = true;
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    setenv("SLURM_CONF", (dir_->path() / "cluster/slurm.conf").c_str(), 1);
  }
  void TearDown() override {
    if (!started_) return;
    run_capture({"scancel", "--user=" + std::string(getenv("USER") ? getenv("USER") : "root")});
    run_capture({script_, "stop", (dir_->path() / "cluster").string()});
    unsetenv("SLURM_CONF");
  }
  std::unique_ptr<testing::TempDir> dir_;
  std::string script_;
  bool started_ = false;
};

std::optional<JobRow> train_running(State& st, const std::string& run) {
  for (auto& j : st.jobs(run)) {
    if (j.kind == JobKind::kTrain && j.state == JobState::kRunning) return j;
  }
  return std::nullopt;
}

TEST_F(SlurmCluster, SweepSurvivesPreemptionRequeueAndAnOrchestratorCrash) {
  const fs::path d = dir_->path();
  std::ofstream(d / "base.toml") << "[train]\nmax_steps = 3\n";
  std::ofstream(d / "sweep.toml")
      << "format = \"m3ret-sweep/1\"\n[sweep]\nname = \"slurmt\"\nbase_config = \"base.toml\"\n"
      << "work_dir = \"" << (d / "work").string() << "\"\nmax_retries = 1\n"
      << "preempted_exit_code = 75\n[axes]\n\"train.seed\" = [1, 2]\n"
      << "[slurm]\nmax_parallel = 4\ntime = \"00:10:00\"\neval_time = \"00:05:00\"\n"
      << "templates = \"" << (testing::source_dir() / "slurm").string() << "\"\n";
  Sweep sweep = load_sweep(d / "sweep.toml");
  auto backend = make_slurm_backend(sweep.slurm);
  OrchestratorOptions opts;
  const char* real = std::getenv("M3RET_SLURM_JOB_BINARY");
  opts.m3ret = real ? fs::path(real) : testing::source_dir() / "tests/integration/fake_m3ret.sh";
  opts.mpiexec = "mpirun";
  setenv("FAKE_M3RET_LOG", (d / "invocations.log").c_str(), 1);
  const fs::path db = d / "work/state.db";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(real ? 20 : 5);
  auto sleep = [] { std::this_thread::sleep_for(std::chrono::milliseconds(500)); };

  std::string preempted_id, requeued_id;
  {
    // First life: until both train jobs run; preempt one, requeue the other, then "crash".
    State st(db);
    Orchestrator o(sweep, st, *backend, opts);
    o.reconcile();
    while (std::chrono::steady_clock::now() < deadline) {
      o.step();
      auto a = train_running(st, "r000-seed=1");
      auto b = train_running(st, "r001-seed=2");
      if (a && preempted_id.empty()) {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        preempted_id = a->backend_id;
        auto r = run_capture({"scancel", "--batch", "--signal=USR1", preempted_id});
        ASSERT_EQ(r.status, 0) << r.err;
      }
      if (b && requeued_id.empty()) {
        std::this_thread::sleep_for(std::chrono::seconds(3));
        requeued_id = b->backend_id;
        auto r = run_capture({"scontrol", "requeue", requeued_id});
        ASSERT_EQ(r.status, 0) << r.err;
      }
      if (!preempted_id.empty() && !requeued_id.empty()) break;
      sleep();
    }
    ASSERT_FALSE(preempted_id.empty() || requeued_id.empty()) << "train jobs never ran";
  }  // kill: no cleanup beyond what each SQLite transaction committed
  {
    State st(db);
    Orchestrator o(sweep, st, *backend, opts);
    o.reconcile();
    bool done = false;
    while (!done && std::chrono::steady_clock::now() < deadline) {
      done = o.step();
      if (!done) sleep();
    }
    ASSERT_TRUE(done) << "the sweep did not finish in time; see " << (d / "work/jobs").string();
  }
  State st(db, true);
  for (const auto& r : st.runs()) {
    EXPECT_EQ(r.state, "succeeded") << r.name;
    auto cks = st.checkpoints(r.name);
    EXPECT_EQ(cks.size(), 3u) << r.name;
    for (const auto& [step, path] : cks) {
      bool evaluated = false;
      for (const auto& e : st.evaluations(r.name)) evaluated = evaluated || (e.step == step && e.metric == "recall@1");
      EXPECT_TRUE(evaluated) << r.name << " step " << step;
    }
  }
  // The preempted job ended with exit 75 and was resubmitted as attempt a1.
  auto a0 = st.job_by_name("slurmt-r000-seed=1-train-a0");
  ASSERT_TRUE(a0);
  EXPECT_EQ(a0->state, JobState::kPreempted);
  EXPECT_EQ(a0->exit_code, 75);
  EXPECT_TRUE(st.job_by_name("slurmt-r000-seed=1-train-a1"));
  // The requeued job was continued by Slurm under the same id: no new attempt.
  EXPECT_FALSE(st.job_by_name("slurmt-r001-seed=2-train-a1"));
  EXPECT_EQ(st.job_by_name("slurmt-r001-seed=2-train-a0")->state, JobState::kSucceeded);

  // No job submitted twice: every job name appears once among Slurm's jobs.
  auto all = run_capture({"scontrol", "show", "job", "-o"});
  std::map<std::string, int> per_name;
  size_t pos = 0;
  while ((pos = all.out.find("JobName=", pos)) != std::string::npos) {
    pos += 8;
    ++per_name[all.out.substr(pos, all.out.find(' ', pos) - pos)];
  }
  EXPECT_EQ(per_name.size(), st.jobs().size());
  for (const auto& [name, n] : per_name) EXPECT_EQ(n, 1) << name;
  // And each eval ran once (invocations of `eval` by checkpoint).
  std::ifstream log(d / "invocations.log");
  std::map<std::string, int> evals;
  for (std::string line; std::getline(log, line);) {
    if (line.rfind("eval ", 0) == 0) ++evals[line];
  }
  if (!real) {
    EXPECT_EQ(evals.size(), 6u);
    for (const auto& [line, n] : evals) EXPECT_EQ(n, 1) << line;
  }
}

}  // namespace
}  // namespace m3ret
