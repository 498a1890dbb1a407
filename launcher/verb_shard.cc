#include <spdlog/spdlog.h>

#include "core/runtime.h"
#include "launcher/verbs.h"
#include "sharding/sharder.h"

namespace m3ret::launcher {

void add_shard_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "shard", "Decode and preprocess a manifest into per-modality HDF5 shards (run under "
               "mpiexec/srun for several ranks)");
  auto opts = std::make_shared<CommonOptions>();
  auto manifest = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  opts->add_to(verb);
  verb->add_option("--manifest", *manifest, "manifest CSV (path,modality,labels,group,split)")
      ->required()
      ->check(CLI::ExistingFile);
  verb->add_option("--out", *out, "shard folder (SHARDS)")->required();
  verb->callback([opts, manifest, out] {
    AppConfig cfg = opts->load();
    start_mpi(opts->verbose);
    auto& rt = Runtime::get();
    sharding::shard_dataset(*manifest, *out, cfg.sharding.shard, cfg.data.preprocess,
                            rt.world_comm());
  });
}

}  // namespace m3ret::launcher
