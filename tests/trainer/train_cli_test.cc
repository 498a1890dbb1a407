// `m3ret train` through the binary: stop signals under mpiexec.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "test_util.h"
#include "trainer/checkpoint.h"
#include "trainer/tensorboard_reader.h"
#include "trainer/trainer.h"
#include "trainer/trainer_test_util.h"

extern char** environ;

namespace m3ret::trainer {
namespace {

namespace stdfs = std::filesystem;

// The --set values of a tiny MAE run on the mixed test dataset.
std::vector<std::string> tiny_train_sets(int64_t max_steps) {
  return {"model.preset=\"tiny\"",
          "model.width=32",
          "model.depth=1",
          "model.heads=2",
          "model.tubelet=[2, 8, 8]",
          "train.objective=\"mae\"",
          "train.global_batch_size=4",
          "train.warmup_steps=1",
          "train.checkpoint_every=0",
          "train.modalities=[\"xray\", \"endoscopy\"]",
          "loader.workers=1",
          "mae.decoder_width=16",
          "mae.decoder_depth=1",
          "mae.decoder_heads=2",
          "train.max_steps=" + std::to_string(max_steps)};
}

// The options of a tiny MAE run on the mixed test dataset.
std::vector<std::string> tiny_train_args(const stdfs::path& shards, const stdfs::path& run,
                                         int64_t max_steps) {
  std::vector<std::string> args = {testing::m3ret_binary().string(),
                                   "train",
                                   "--shards",
                                   shards.string(),
                                   "--run-dir",
                                   run.string()};
  for (const std::string& set : tiny_train_sets(max_steps)) args.insert(args.end(), {"--set", set});
  return args;
}

// Starts argv with its output in `log`, in a new process group.
pid_t spawn(const std::vector<std::string>& argv, const stdfs::path& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    // This test process is an MPI singleton: its launcher variables would confuse mpiexec.
    std::vector<std::string> mpi_vars;
    for (char** e = environ; *e; ++e) {
      const std::string v(*e);
      if (v.rfind("OMPI_", 0) == 0 || v.rfind("PMIX_", 0) == 0)
        mpi_vars.push_back(v.substr(0, v.find('=')));
    }
    for (const auto& v : mpi_vars) unsetenv(v.c_str());
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

int64_t metrics_lines(const stdfs::path& run) {
  std::ifstream f(run / "metrics.jsonl");
  int64_t n = 0;
  for (std::string line; std::getline(f, line);) n += !line.empty();
  return n;
}

// `m3ret demo --out OUT` on a generated set of one patient per class, its
// stages started with `mpiexec`.
std::vector<std::string> small_demo_args(const stdfs::path& out, const std::string& mpiexec) {
  return {testing::m3ret_binary().string(),
          "demo",
          "--out",
          out.string(),
          "--set",
          "synth.patients_per_class=1",
          "--set",
          "demo.mpiexec=\"" + mpiexec + "\""};
}

// Waits until the run has trained two steps (polled: the lines are another
// process's, with a deadline, not a fixed wait) or `pid` has exited.
void wait_for_two_steps(const stdfs::path& run, pid_t pid) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  int status = 0;
  while (metrics_lines(run) < 2 && std::chrono::steady_clock::now() < deadline &&
         waitpid(pid, &status, WNOHANG) == 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

int exit_code(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

class TrainCli : public ::testing::Test {
 protected:
  void SetUp() override { testing::write_mixed_dataset(dir_ / "shards"); }
  // Starts a 2-rank run under `m3ret train --mpiexec`, waits for its first
  // steps, sends SIGTERM to `target(pid)`, and checks the checkpoint and exit 75.
  void expect_checkpoint_on_sigterm(bool whole_group) {
    const auto run = dir_ / "run";
    auto args = tiny_train_args(dir_ / "shards", run, 1000000);
    args.insert(args.begin() + 2, {"--mpiexec", std::string(M3RET_TEST_MPIEXEC) + " -n 2 " +
                                                    M3RET_TEST_MPIEXEC_FLAGS});
    const pid_t pid = spawn(args, dir_ / "log");
    ASSERT_GT(pid, 0);
    wait_for_two_steps(run, pid);
    ASSERT_GE(metrics_lines(run), 2) << fs::read_file(dir_ / "log");
    kill(whole_group ? -pid : pid, SIGTERM);  // Slurm signals every process of the job
    EXPECT_EQ(exit_code(pid), kExitPreempted) << fs::read_file(dir_ / "log");
    auto ck = find_latest_valid(run);
    ASSERT_TRUE(ck.has_value()) << fs::read_file(dir_ / "log");
    EXPECT_EQ(ck->filename(), checkpoint_name(metrics_lines(run)));
    for (auto& e : stdfs::directory_iterator(run / "checkpoints"))
      EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  }
  testing::TempDir dir_{"train-cli"};
};

TEST_F(TrainCli, SigtermToTheLauncherCheckpointsAndExits75) { expect_checkpoint_on_sigterm(false); }

TEST_F(TrainCli, SigtermToEveryProcessCheckpointsAndExits75) { expect_checkpoint_on_sigterm(true); }

// Re-running never destroys: a folder with a previous run is refused unless
// continued (--resume auto) or replaced (--overwrite).
TEST_F(TrainCli, ARunFolderIsContinuedOrOverwrittenNeverSilentlyRestarted) {
  const auto run = dir_ / "run";
  auto train = [&](int64_t steps, std::vector<std::string> extra) {
    auto args = tiny_train_args(dir_ / "shards", run, steps);
    args.insert(args.end(), extra.begin(), extra.end());
    return exit_code(spawn(args, dir_ / "log"));
  };
  ASSERT_EQ(train(2, {}), 0) << fs::read_file(dir_ / "log");
  EXPECT_EQ(metrics_lines(run), 2);
  stdfs::create_directories(run / "eval");
  std::ofstream(run / "eval" / "history.jsonl") << "{\"step\": 2}\n";
  // Again without a choice: refused, nothing touched.
  EXPECT_NE(train(2, {}), 0);
  const std::string log = fs::read_file(dir_ / "log");
  EXPECT_NE(log.find(run.string() + " already holds a run"), std::string::npos) << log;
  EXPECT_NE(log.find("--resume auto"), std::string::npos) << log;
  EXPECT_NE(log.find("--overwrite"), std::string::npos) << log;
  EXPECT_EQ(metrics_lines(run), 2);
  EXPECT_EQ(find_latest_valid(run)->filename(), checkpoint_name(2));
  // Continued: steps 3 and 4 follow, each logged once.
  ASSERT_EQ(train(4, {"--resume", "auto"}), 0) << fs::read_file(dir_ / "log");
  EXPECT_EQ(metrics_lines(run), 4);
  EXPECT_TRUE(stdfs::exists(run / "eval" / "history.jsonl"));
  // Both choices at once: a usage error.
  EXPECT_NE(train(4, {"--resume", "auto", "--overwrite"}), 0);
  // Replaced: the old checkpoints, metrics and evaluations are gone.
  ASSERT_EQ(train(1, {"--overwrite"}), 0) << fs::read_file(dir_ / "log");
  EXPECT_EQ(metrics_lines(run), 1);
  EXPECT_FALSE(stdfs::exists(run / "eval"));
  EXPECT_FALSE(stdfs::exists(run / "checkpoints" / checkpoint_name(4)));
  EXPECT_EQ(find_latest_valid(run)->filename(), checkpoint_name(1));
}

// Metrics of steps trained again after a resume (a crash after the last
// checkpoint) are not logged twice.
TEST_F(TrainCli, ResumeDropsMetricsOfStepsAfterTheCheckpoint) {
  const auto run = dir_ / "run";
  auto args = tiny_train_args(dir_ / "shards", run, 2);
  ASSERT_EQ(exit_code(spawn(args, dir_ / "log")), 0) << fs::read_file(dir_ / "log");
  std::ofstream(run / "metrics.jsonl", std::ios::app) << "{\"step\": 3}\n";  // never checkpointed
  args = tiny_train_args(dir_ / "shards", run, 3);
  args.insert(args.end(), {"--resume", "auto"});
  ASSERT_EQ(exit_code(spawn(args, dir_ / "log")), 0) << fs::read_file(dir_ / "log");
  std::ifstream f(run / "metrics.jsonl");
  int64_t n = 0;
  for (std::string line; std::getline(f, line);)
    EXPECT_EQ(nlohmann::json::parse(line)["step"].get<int64_t>(), ++n) << line;
  EXPECT_EQ(n, 3);
}

// The same rule for `m3ret demo --out`: a folder m3ret did not make is never
// emptied; an earlier demo of another configuration is reused only after
// --overwrite, which empties it first.
TEST_F(TrainCli, DemoOutIsReusedOnlyForTheSameConfigAndOverwrittenOnlyIfADemo) {
  const auto out = dir_ / "demo";
  auto demo = [&](std::vector<std::string> extra) {
    auto args = small_demo_args(out, "/nonexistent/mpiexec");
    args.insert(args.end(), extra.begin(), extra.end());
    return exit_code(spawn(args, dir_ / "log"));
  };
  stdfs::create_directories(out);
  std::ofstream(out / "notes.txt") << "mine";
  EXPECT_NE(demo({"--overwrite"}), 0);
  EXPECT_NE(fs::read_file(dir_ / "log").find("holds no earlier demo"), std::string::npos)
      << fs::read_file(dir_ / "log");
  EXPECT_TRUE(stdfs::exists(out / "notes.txt"));
  // An earlier demo made with another configuration.
  fs::write_atomic(out / "demo.json",
                   R"({"format": "m3ret-demo", "format_version": 1, "config": "[other]\n"})");
  EXPECT_NE(demo({}), 0);
  const std::string log = fs::read_file(dir_ / "log");
  EXPECT_NE(log.find("holds a demo made with a different configuration"), std::string::npos) << log;
  EXPECT_NE(log.find("--overwrite"), std::string::npos) << log;
  EXPECT_TRUE(stdfs::exists(out / "notes.txt"));
  // --overwrite empties it, then the demo starts (and stops at the shard
  // stage, whose mpiexec does not exist); its mark records this configuration.
  EXPECT_NE(demo({"--overwrite"}), 0);
  EXPECT_NE(fs::read_file(dir_ / "log").find("cannot start '/nonexistent/mpiexec'"),
            std::string::npos)
      << fs::read_file(dir_ / "log");
  EXPECT_FALSE(stdfs::exists(out / "notes.txt"));
  auto mark = nlohmann::json::parse(fs::read_file(out / "demo.json"));
  EXPECT_NE(mark["config"].get<std::string>().find("/nonexistent/mpiexec"), std::string::npos);
  // The same configuration again: accepted (it goes on to the shard stage).
  EXPECT_NE(demo({}), 0);
  EXPECT_NE(fs::read_file(dir_ / "log").find("cannot start '/nonexistent/mpiexec'"),
            std::string::npos)
      << fs::read_file(dir_ / "log");
}

// The pids of the processes (but this one) whose command line mentions `text`.
std::vector<pid_t> processes_mentioning(const std::string& text) {
  std::vector<pid_t> pids;
  for (const auto& e : stdfs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = std::stoi(name);
    if (pid == getpid()) continue;
    std::ifstream f(e.path() / "cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmdline.find(text) != std::string::npos) pids.push_back(pid);
  }
  return pids;
}

// `kill PID` of a demo while it trains, not of its process group (what a
// supervisor or a user who stops the demo does): the demo passes the stop on
// to its mpiexec, the ranks checkpoint, and it exits 75 with nothing it
// started left running.
TEST_F(TrainCli, ADemoStoppedAloneStopsItsTrainingAndLeavesNothingRunning) {
  const auto out = dir_ / "demo-stopped";
  auto args = small_demo_args(out, M3RET_TEST_MPIEXEC);
  for (const std::string& set : tiny_train_sets(1000000)) args.insert(args.end(), {"--set", set});
  const pid_t pid = spawn(args, dir_ / "log");
  ASSERT_GT(pid, 0);
  const auto run = out / "run";
  wait_for_two_steps(run, pid);
  ASSERT_GE(metrics_lines(run), 2) << fs::read_file(dir_ / "log");
  kill(pid, SIGTERM);
  EXPECT_EQ(exit_code(pid), kExitPreempted) << fs::read_file(dir_ / "log");
  const std::string log = fs::read_file(dir_ / "log");
  EXPECT_NE(log.find("Terminated received during stage 'train'"), std::string::npos) << log;
  EXPECT_NE(log.find("the same command continues"), std::string::npos) << log;
  EXPECT_TRUE(find_latest_valid(run).has_value()) << log;
  // The demo waited for its mpiexec, which waited for its ranks: none is left.
  const auto left = processes_mentioning(run.string());
  for (pid_t p : left) kill(p, SIGKILL);
  EXPECT_TRUE(left.empty()) << left.size() << " processes of the demo still ran after it exited";
}

// Training writes TensorBoard event files beside metrics.jsonl (every number of
// a metrics line, loss terms under loss/), and each metrics line has its UTC time.
TEST_F(TrainCli, TensorBoardReadsTheTrainingScalarsAndMetricsHaveTimestamps) {
  const auto run = dir_ / "run";
  ASSERT_EQ(exit_code(spawn(tiny_train_args(dir_ / "shards", run, 3), dir_ / "log")), 0)
      << fs::read_file(dir_ / "log");
  std::ifstream f(run / "metrics.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(f, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& j : lines) {
    const auto t = j["time"].get<std::string>();  // 2026-12-01T20:12:49.123Z
    EXPECT_EQ(t.size(), 24u) << t;
    EXPECT_EQ(t.back(), 'Z') << t;
  }
  EXPECT_LE(lines[0]["time"].get<std::string>(), lines[2]["time"].get<std::string>());
  std::string why;
  auto got = read_with_tensorboard(run / "tensorboard", &why);
  if (got.is_null()) GTEST_SKIP() << why;
  ASSERT_FALSE(got.contains("error")) << why;
  for (const char* tag :
       {"loss/loss", "loss/mae", "train/lr", "train/wd", "train/grad_norm", "train/samples_per_s",
        "train/time_data_s", "train/time_compute_s", "train/time_comm_s", "train/time_optim_s"}) {
    ASSERT_TRUE(got.contains(tag)) << tag << " in " << got.dump();
    ASSERT_EQ(got[tag].size(), 3u) << tag;
  }
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got["loss/loss"][i][0].get<int64_t>(), static_cast<int64_t>(i + 1));
    EXPECT_FLOAT_EQ(got["loss/loss"][i][1].get<float>(), lines[i]["loss"].get<float>());
    EXPECT_FLOAT_EQ(got["train/lr"][i][1].get<float>(), lines[i]["lr"].get<float>());
  }
  // Evaluating the checkpoint adds its recall@k at its step, as the report has it.
  const auto report = dir_ / "report.json";
  ASSERT_EQ(exit_code(spawn({testing::m3ret_binary().string(), "eval", "--checkpoint", run.string(),
                             "--shards", (dir_ / "shards").string(), "--out", report.string(),
                             "--set", "eval.split=\"\"", "--set", "eval.ks=[1, 5]"},
                            dir_ / "eval.log")),
            0)
      << fs::read_file(dir_ / "eval.log");
  got = read_with_tensorboard(run / "tensorboard" / "eval", &why);
  ASSERT_FALSE(got.is_null() || got.contains("error")) << why;
  const auto r = nlohmann::json::parse(fs::read_file(report));
  const auto& rows = r["encoders"].begin().value();
  double sum = 0;
  for (const char* m : {"xray", "endoscopy"}) {
    const std::string tag = std::string("eval/recall@1/") + m;
    ASSERT_TRUE(got.contains(tag)) << tag << " in " << got.dump();
    ASSERT_EQ(got[tag].size(), 1u) << tag;
    EXPECT_EQ(got[tag][0][0].get<int64_t>(), 3);
    const double want = rows["per_modality"][m]["recall@1"].get<double>();
    EXPECT_FLOAT_EQ(got[tag][0][1].get<float>(), static_cast<float>(want)) << tag;
    sum += want;
  }
  EXPECT_FLOAT_EQ(got["eval/recall@1/mean"][0][1].get<float>(), static_cast<float>(sum / 2));
  EXPECT_TRUE(got.contains("eval/recall@5/xray->endoscopy")) << got.dump();
  got = read_with_tensorboard(run / "tensorboard", &why);  // the training run is unchanged
  EXPECT_EQ(got["loss/loss"].size(), 3u) << got.dump();
}

// `m3ret eval --checkpoint` with the whitening readout: it embeds the train split too (the rows
// the whitening is fitted on) but evaluates the test split, for the encoder and its baselines.
TEST_F(TrainCli, EvalWithWhiteningEmbedsTheFitSplitAndRecordsTheFits) {
  const auto run = dir_ / "run";
  ASSERT_EQ(exit_code(spawn(tiny_train_args(dir_ / "shards", run, 2), dir_ / "log")), 0)
      << fs::read_file(dir_ / "log");
  const auto report = dir_ / "white.json";
  ASSERT_EQ(exit_code(spawn(
                {testing::m3ret_binary().string(), "eval", "--checkpoint", run.string(), "--shards",
                 (dir_ / "shards").string(), "--out", report.string(), "--baselines", "random-init",
                 "--set", "eval.whiten_dims=2", "--set", "eval.ks=[1, 2]"},
                dir_ / "eval.log")),
            0)
      << fs::read_file(dir_ / "eval.log");
  const std::string log = fs::read_file(dir_ / "eval.log");
  EXPECT_NE(log.find("readout: PCA whitening to 2 dimensions"), std::string::npos) << log;
  const auto r = nlohmann::json::parse(fs::read_file(report));
  EXPECT_EQ(r["whiten_dims"], 2);
  EXPECT_EQ(r["whiten_split"], "train");
  EXPECT_EQ(r["split"], "test");
  EXPECT_EQ(r["samples"], 8);  // 4 test samples per modality evaluated
  for (const char* encoder : {"trained", "random-init"}) {
    const auto& w = r["encoders"][encoder]["whitening"];
    SCOPED_TRACE(encoder + std::string(" ") + w.dump());
    for (const char* m : {"xray", "endoscopy"}) {  // fitted on its 12 train samples
      EXPECT_EQ(w[m]["fitted_on"], m);
      EXPECT_EQ(w[m]["rows"], 12);
    }
    EXPECT_EQ(w["cross_modal"]["fitted_on"], "all");
    EXPECT_EQ(w["cross_modal"]["rows"], 24);
  }
  // The run's history says which readout, and TensorBoard keeps it apart from cosine recall.
  const std::string history = fs::read_file(run / "eval" / "history.jsonl");
  EXPECT_EQ(nlohmann::json::parse(history.substr(0, history.find('\n')))["whiten_dims"], 2);
  std::string why;
  const auto got = read_with_tensorboard(run / "tensorboard" / "eval", &why);
  if (!got.is_null()) {
    ASSERT_FALSE(got.contains("error")) << why;
    EXPECT_TRUE(got.contains("eval-whitened2/recall@1/xray")) << got.dump();
    EXPECT_FALSE(got.contains("eval/recall@1/xray")) << got.dump();
  }
  // More dimensions than 12 train rows span: each fit keeps what its rows span, and says so.
  const auto wide = dir_ / "wide.json";
  ASSERT_EQ(exit_code(spawn({testing::m3ret_binary().string(), "eval", "--checkpoint", run.string(),
                             "--shards", (dir_ / "shards").string(), "--out", wide.string(),
                             "--no-history", "--set", "eval.whiten_dims=30"},
                            dir_ / "wide.log")),
            0)
      << fs::read_file(dir_ / "wide.log");
  const auto w = nlohmann::json::parse(fs::read_file(wide))["encoders"]["trained"];
  EXPECT_EQ(w["whitening"]["xray"]["dims"], 11) << w["whitening"].dump();
  EXPECT_EQ(w["whitening"]["cross_modal"]["dims"], 23) << w["whitening"].dump();
  EXPECT_NE(w["warnings"].dump().find("span only 11 directions"), std::string::npos)
      << w["warnings"].dump();
  // A fit split with no rows is an error naming the key and the splits there are.
  EXPECT_NE(exit_code(spawn(
                {testing::m3ret_binary().string(), "eval", "--checkpoint", run.string(), "--shards",
                 (dir_ / "shards").string(), "--out", (dir_ / "bad.json").string(), "--no-history",
                 "--set", "eval.whiten_dims=2", "--set", "eval.whiten_split=val"},
                dir_ / "bad.log")),
            0);
  const std::string bad = fs::read_file(dir_ / "bad.log");
  EXPECT_NE(bad.find("eval.whiten_split = 'val' selects none"), std::string::npos) << bad;
  EXPECT_NE(bad.find("splits present: test, train"), std::string::npos) << bad;
}
}  // namespace
}  // namespace m3ret::trainer
