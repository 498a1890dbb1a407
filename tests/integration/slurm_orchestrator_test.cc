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

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "launcher/orchestrator/orchestrator.h"
#include "launcher/process.h"
#include "slurm_fixture.h"
#include "test_util.h"

namespace m3ret {
namespace {

namespace fs = std::filesystem;
using namespace orchestrator;
using launcher::run_capture;

using testing::SlurmCluster;

std::optional<JobRow> train_running(State& st, const std::string& run) {
  for (auto& j : st.jobs(run)) {
    if (j.kind == JobKind::kTrain && j.state == JobState::kRunning) return j;
  }
  return std::nullopt;
}

// `FIELD=value` of `scontrol show job ID -o` ("" when absent).
std::string job_field(const std::string& id, const std::string& key) {
  auto r = run_capture({"scontrol", "show", "job", id, "-o"});
  auto p = r.out.find(" " + key + "=");
  if (p == std::string::npos) return "";
  p += key.size() + 2;
  return r.out.substr(p, r.out.find_first_of(" \n", p) - p);
}

// The slurm/ templates by hand, as docs/slurm.md tells a user (from the
// source tree, M3RET and MPIEXEC in the environment that sbatch exports,
// the templates' #SBATCH sizes overridden for this one small node):
//   sbatch slurm/shard.sbatch CONFIG MANIFEST SHARDS
//   sbatch --dependency=afterok:SHARD slurm/pretrain.sbatch CONFIG SHARDS RUN --set ...
//   sbatch --dependency=afterok:TRAIN slurm/eval.sbatch CONFIG RUN SHARDS OUT
// The train job is preempted by hand (SIGUSR1 to the batch shell, as
// --signal=B:USR1@300 does before the time limit): the template's body must
// checkpoint, requeue itself and resume. A shard job that fails leaves its
// afterok dependant never run (cancelled by --kill-on-invalid-dep=yes), and
// the orchestrator's Slurm backend reads that as a dependency failure.
TEST_F(SlurmCluster, TemplatesWorkByHandWithAfterokChainsAndRequeueOnPreemption) {
  const fs::path d = dir_->path();
  const fs::path src = testing::source_dir();
  const char* real = std::getenv("M3RET_SLURM_JOB_BINARY");
  const fs::path bin = real ? fs::path(real) : src / "tests/integration/fake_m3ret.sh";
  std::ofstream(d / "base.toml") << "[train]\nmax_steps = 3\ncheckpoint_every = 1\n";
  std::ofstream(d / "manifest.csv") << "path,modality,labels,group,split\n";
  const std::string mpiexec =
      std::string("mpirun --oversubscribe") + (geteuid() == 0 ? " --allow-run-as-root" : "");
  const std::string config = (d / "base.toml").string(), shards = (d / "shards").string(),
                    run = (d / "run").string(), out = (d / "eval").string();
  using launcher::shell_line;
  auto sbatch = [&](const std::string& env, const std::string& args) {
    std::string cmd = "cd " + shell_line({src.string()}) + " && " + env +
                      " M3RET=" + shell_line({bin.string()}) + " MPIEXEC=" + shell_line({mpiexec}) +
                      " FAKE_M3RET_LOG=" + shell_line({(d / "byhand.log").string()}) +
                      " sbatch --parsable --output=" + shell_line({(d / "slurm-%j.out").string()}) +
                      " " + args;
    auto r = run_capture({"sh", "-c", cmd});
    EXPECT_EQ(r.status, 0) << cmd << "\n" << r.err;
    std::string id = r.out.substr(0, r.out.find_first_of(";\n"));
    EXPECT_FALSE(id.empty()) << cmd;
    return id;
  };
  const std::string one_task = "--ntasks=1 --cpus-per-task=1 --time=00:05:00 ";
  // More than the 5 minutes of --signal=B:USR1@300, or Slurm preempts it at once.
  const std::string one_node = "--nodes=1 --ntasks-per-node=1 --cpus-per-task=1 --time=00:20:00 ";
  std::string shard = sbatch("", one_task + shell_line({"slurm/shard.sbatch", config,
                                                        (d / "manifest.csv").string(), shards}));
  std::string train = sbatch(
      "", "--dependency=afterok:" + shard + " " + one_node +
              shell_line({"slurm/pretrain.sbatch", config, shards, run, "--set", "train.seed=3"}));
  std::string eval = sbatch("", "--dependency=afterok:" + train + " " + one_task +
                                    shell_line({"slurm/eval.sbatch", config, run, shards, out}));
  std::string bad =
      sbatch("FAKE_M3RET_FAIL=shard",
             one_task + shell_line({"slurm/shard.sbatch", config, (d / "manifest.csv").string(),
                                    (d / "shards2").string()}));
  std::string never =
      sbatch("", "--dependency=afterok:" + bad + " --kill-on-invalid-dep=yes " + one_node +
                     shell_line({"slurm/pretrain.sbatch", config, (d / "shards2").string(),
                                 (d / "run2").string()}));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(real ? 20 : 5);
  auto sleep = [] { std::this_thread::sleep_for(std::chrono::milliseconds(250)); };
  // Preempt the train job once it wrote its first checkpoint.
  while (!fs::exists(fs::path(run) / "checkpoints/step-000000001") &&
         std::chrono::steady_clock::now() < deadline)
    sleep();
  ASSERT_TRUE(fs::exists(fs::path(run) / "checkpoints/step-000000001"))
      << "the train job never ran";
  auto r = run_capture({"scancel", "--batch", "--signal=USR1", train});
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string ids = shard + "," + train + "," + eval + "," + bad + "," + never;
  while (std::chrono::steady_clock::now() < deadline) {
    auto q = run_capture(
        {"squeue", "-h", "-j", ids, "-t", "PENDING,RUNNING,COMPLETING,REQUEUED,CONFIGURING"});
    if (q.status == 0 && q.out.find_first_not_of(" \n") == std::string::npos) break;
    sleep();
  }
  EXPECT_EQ(job_field(shard, "JobState"), "COMPLETED");
  EXPECT_EQ(job_field(train, "JobState"), "COMPLETED");
  EXPECT_EQ(job_field(train, "Restarts"), "1") << "the preempted train job requeued itself once";
  EXPECT_EQ(job_field(eval, "JobState"), "COMPLETED");
  EXPECT_EQ(job_field(bad, "JobState"), "FAILED");
  EXPECT_EQ(job_field(bad, "ExitCode"), "1:0");
  EXPECT_EQ(job_field(never, "JobState"), "CANCELLED");
  EXPECT_EQ(job_field(never, "Reason"), "DependencyNeverSatisfied");
  auto seen = make_slurm_backend(SlurmOptions{})->poll(never, d / "no-job-dir");
  EXPECT_EQ(seen.state, JobState::kCancelled);
  EXPECT_EQ(seen.reason.rfind(kDependencyFailed, 0), 0u) << seen.reason;

  // What each job left, and the processes they started.
  EXPECT_TRUE(fs::exists(fs::path(shards) / "index.json"));
  for (int step = 1; step <= 3; ++step) {
    EXPECT_TRUE(
        fs::exists(fs::path(run) / fmt::format("checkpoints/step-00000000{}/manifest.json", step)))
        << step;
  }
  EXPECT_TRUE(fs::exists(fs::path(out) / "report.json"));
  EXPECT_FALSE(fs::exists(d / "run2"));
  if (real) return;
  std::map<std::string, int> starts;
  std::ifstream log(d / "byhand.log");
  for (std::string line; std::getline(log, line);) ++starts[line.substr(0, line.find(" | job="))];
  // The template starts the ranks through `m3ret train --mpiexec` (SIGTERM then checkpoints too).
  const std::string train_line = "train --mpiexec " + mpiexec + " --config " + config +
                                 " --shards " + shards + " --run-dir " + run +
                                 " --resume auto --set train.seed=3";
  EXPECT_EQ(starts[train_line], 2) << "preempted, then resumed";
  EXPECT_EQ(starts["shard --config " + config + " --manifest " + (d / "manifest.csv").string() +
                   " --out " + shards],
            1);
  EXPECT_EQ(starts["embed --config " + config + " --checkpoint " + run + " --shards " + shards +
                   " --out " + out + "/embeddings.h5"],
            1);
  EXPECT_EQ(starts["eval --config " + config + " --embeddings " + out + "/embeddings.h5 --out " +
                   out + "/report.json"],
            1);
  EXPECT_EQ(starts.size(), 5u)
      << "shard, failed shard, train, embed, eval; nothing for the cancelled dependant";
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
      for (const auto& e : st.evaluations(r.name))
        evaluated = evaluated || (e.step == step && e.metric == "recall@1");
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
    if (line.rfind("eval ", 0) == 0) ++evals[line.substr(0, line.find(" | job="))];
  }
  if (!real) {
    EXPECT_EQ(evals.size(), 6u);
    for (const auto& [line, n] : evals) EXPECT_EQ(n, 1) << line;
  }
}

}  // namespace
}  // namespace m3ret
