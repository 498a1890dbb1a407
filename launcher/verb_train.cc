#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <sstream>

#include <spdlog/spdlog.h>

#include "core/communicator.h"
#include "core/error.h"
#include "core/runtime.h"
#include "launcher/process.h"
#include "launcher/verbs.h"
#include "trainer/trainer.h"

namespace m3ret::launcher {

namespace {

struct TrainArgs {
  CommonOptions opts;
  std::string shards, run_dir, resume = "no", mpiexec;
  bool overwrite = false;
};

// The `m3ret train` command line the ranks run (the same options without --mpiexec).
std::vector<std::string> rank_command(const TrainArgs& a) {
  std::vector<std::string> cmd;
  std::istringstream words(a.mpiexec);
  for (std::string w; words >> w;) cmd.push_back(w);
  if (cmd.empty()) throw Error("train: --mpiexec is empty (give e.g. \"mpiexec -n 2\")");
  cmd.insert(cmd.end(), {self_path().string(), "train", "--shards", a.shards, "--run-dir",
                         a.run_dir, "--resume", a.resume});
  if (a.opts.config) cmd.insert(cmd.end(), {"--config", *a.opts.config});
  for (const auto& s : a.opts.sets) cmd.insert(cmd.end(), {"--set", s});
  if (a.opts.verbose) cmd.push_back("-v");
  if (a.overwrite) cmd.push_back("--overwrite");
  return cmd;
}

// Runs the ranks under mpiexec as a child (process.h, run_passing_stop_on): a stop
// signal sent to this process (or to every process of the job, as Slurm does)
// becomes the preemption that Open MPI can deliver, SIGUSR1 to every rank.
// Returns mpiexec's exit status (75 after a preemption checkpoint).
int run_ranks(const std::vector<std::string>& cmd) {
  SpawnOptions opts;
  opts.stand_in = true;
  spdlog::info("train: {}", shell_line(cmd));
  try {
    return run_passing_stop_on(cmd, opts, [&](int sig) {
      spdlog::warn("train: {} received: asking the ranks to checkpoint and stop (SIGUSR1 to {})",
                   strsignal(sig), cmd[0]);
    });
  } catch (const std::exception& e) {
    throw Error(fmt::format("train: {}", e.what()));
  }
}

}  // namespace

void add_train_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "train",
      "Pretrain the encoder on shards (MAE, SimDINO or both; run under mpiexec/srun for "
      "data parallelism)");
  auto a = std::make_shared<TrainArgs>();
  a->opts.add_to(verb);
  verb->add_option("--shards", a->shards, "shard folder written by `m3ret shard`")
      ->required()
      ->check(CLI::ExistingDirectory);
  verb->add_option("--run-dir", a->run_dir, "run folder (config, logs, metrics, checkpoints)")
      ->required();
  verb->add_option("--resume", a->resume, "auto: continue from the newest valid checkpoint")
      ->check(CLI::IsMember({"auto", "no"}));
  verb->add_flag("--overwrite", a->overwrite,
                 "start over in a run folder that holds a previous run (deletes its checkpoints, "
                 "metrics.jsonl, tensorboard/ and eval/)");
  verb->add_option("--mpiexec", a->mpiexec,
                   "start the ranks with this command (e.g. \"mpiexec -n 4\") and turn SIGTERM "
                   "to this process into a checkpoint and exit 75");
  verb->callback([a] {
    if (!a->mpiexec.empty()) std::exit(run_ranks(rank_command(*a)));
    // From the start: a SIGTERM/SIGUSR1 during start-up stops before the first step (exit 75).
    trainer::install_preemption_handlers();
    AppConfig cfg = a->opts.load();
    start_mpi(a->opts.verbose, a->run_dir);
    auto& rt = Runtime::get();
    check_on_root([&] { trainer::prepare_run_dir(a->run_dir, a->resume == "auto", a->overwrite); });
    if (rt.is_root()) write_run_record(a->run_dir, cfg, command_line(), rt.world());
    rt.world_comm().barrier();
    trainer::TrainOptions t;
    t.shards = a->shards;
    t.run_dir = a->run_dir;
    t.resume_auto = a->resume == "auto";
    t.resolved_config_toml = resolved_toml(cfg);
    t.settings = cfg.trainer;
    t.loader = cfg.sharding.loader;
    const auto result = trainer::train(t, rt.world_comm());
    if (result.preempted) {
      // Checkpointed; a requeued job continues with --resume auto.
      rt.world_comm().barrier();
      std::exit(trainer::kExitPreempted);
    }
  });
}

}  // namespace m3ret::launcher
