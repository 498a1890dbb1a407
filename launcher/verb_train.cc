#include <cstdlib>

#include <spdlog/spdlog.h>

#include "core/communicator.h"
#include "core/runtime.h"
#include "launcher/verbs.h"
#include "trainer/trainer.h"

namespace m3ret::launcher {

void add_train_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "train", "Pretrain the encoder on shards (MAE, SimDINO or both; run under mpiexec/srun for "
               "data parallelism)");
  auto opts = std::make_shared<CommonOptions>();
  auto shards = std::make_shared<std::string>();
  auto run_dir = std::make_shared<std::string>();
  auto resume = std::make_shared<std::string>("no");
  opts->add_to(verb);
  verb->add_option("--shards", *shards, "shard folder written by `m3ret shard`")
      ->required()
      ->check(CLI::ExistingDirectory);
  verb->add_option("--run-dir", *run_dir, "run folder (config, logs, metrics, checkpoints)")
      ->required();
  verb->add_option("--resume", *resume, "auto: continue from the newest valid checkpoint")
      ->check(CLI::IsMember({"auto", "no"}));
  verb->callback([opts, shards, run_dir, resume] {
    // From the start: a SIGTERM/SIGUSR1 during start-up stops before the first step (exit 75).
    trainer::install_preemption_handlers();
    AppConfig cfg = opts->load();
    start_mpi(opts->verbose, *run_dir);
    auto& rt = Runtime::get();
    if (rt.is_root()) write_run_record(*run_dir, cfg, command_line(), rt.world());
    rt.world_comm().barrier();
    trainer::TrainOptions t;
    t.shards = *shards;
    t.run_dir = *run_dir;
    t.resume_auto = *resume == "auto";
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
