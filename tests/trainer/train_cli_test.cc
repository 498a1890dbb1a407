// `m3ret train` through the binary: stop signals under mpiexec.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "core/fs.h"
#include "test_util.h"
#include "trainer/checkpoint.h"
#include "trainer/trainer.h"
#include "trainer/trainer_test_util.h"

extern char** environ;

namespace m3ret::trainer {
namespace {

namespace stdfs = std::filesystem;

// The options of a tiny MAE run on the mixed test dataset.
std::vector<std::string> tiny_train_args(const stdfs::path& shards, const stdfs::path& run,
                                         int64_t max_steps) {
  std::vector<std::string> args = {testing::m3ret_binary().string(), "train", "--shards",
                                   shards.string(), "--run-dir", run.string()};
  for (const std::string& set : std::vector<std::string>{
           "model.preset=\"tiny\"", "model.width=32", "model.depth=1", "model.heads=2",
        "model.tubelet=[2, 8, 8]", "train.objective=\"mae\"", "train.global_batch_size=4",
        "train.warmup_steps=1", "train.checkpoint_every=0", "train.modalities=[\"xray\", "
        "\"endoscopy\"]", "loader.workers=1", "mae.decoder_width=16", "mae.decoder_depth=1",
        "mae.decoder_heads=2", "train.max_steps=" + std::to_string(max_steps)})
    args.insert(args.end(), {"--set", set});
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
      if (v.rfind("OMPI_", 0) == 0 || v.rfind("PMIX_", 0) == 0) mpi_vars.push_back(v.substr(0, v.find('=')));
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
    // The run is training once metrics.jsonl has lines.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    int status = 0;
    while (metrics_lines(run) < 2 && std::chrono::steady_clock::now() < deadline &&
           waitpid(pid, &status, WNOHANG) == 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
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

}  // namespace
}  // namespace m3ret::trainer
