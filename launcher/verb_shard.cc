#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/error.h"

#include "core/runtime.h"
#include "launcher/verbs.h"
#include "sharding/sharder.h"

namespace m3ret::launcher {

void add_shard_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "shard",
      "Decode and preprocess a manifest into per-modality HDF5 shards (run under "
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
    const sharding::ShardSummary sum = sharding::shard_dataset(
        *manifest, *out, cfg.sharding.shard, cfg.data.preprocess, rt.world_comm());
    if (sum.samples == 0) {  // nothing to train on is a failure, not a success
      throw Error(sum.rows == 0
                      ? fmt::format("shard: {} has no rows: no sample was written", *manifest)
                      : fmt::format("shard: all {} rows of {} were rejected: no sample was written "
                                    "(the reason for each row is in {})",
                                    sum.rows, *manifest,
                                    (std::filesystem::path(*out) / "rejects.csv").string()));
    }
  });
}

}  // namespace m3ret::launcher
