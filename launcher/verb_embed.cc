#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/runtime.h"
#include "eval/embed.h"
#include "launcher/verbs.h"

namespace m3ret::launcher {

void add_embed_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "embed", "Encode shards with a checkpoint into an embeddings HDF5 (ranks share the work)");
  auto opts = std::make_shared<CommonOptions>();
  auto e = std::make_shared<eval::EmbedOptions>();
  auto checkpoint = std::make_shared<std::string>();
  auto shards = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  opts->add_to(verb);
  verb->add_option("--checkpoint", *checkpoint,
                   "checkpoint folder, or a run folder (its latest); required unless --raw-pixels "
                   "or --histogram")
      ->check(CLI::ExistingDirectory);
  verb->add_option("--shards", *shards, "shard folder")->required()->check(CLI::ExistingDirectory);
  verb->add_option("--out", *out, "embeddings file (.h5)")->required();
  verb->add_flag("--random-init", e->random_init,
                 "use the run's initial (untrained) weights: the random-init baseline");
  verb->add_flag("--raw-pixels", e->raw_pixels,
                 "no model: downsampled raw pixels (the raw-pixel baseline, docs/evaluation.md)");
  verb->add_flag("--histogram", e->histogram,
                 "no model: per-channel intensity histograms (the histogram baseline, "
                 "docs/evaluation.md)");
  verb->add_option("--weights", e->weights,
                   "which network of the checkpoint encodes: teacher (SimDINO's EMA teacher), "
                   "student, or auto (the teacher when the checkpoint has one)")
      ->check(CLI::IsMember({"auto", "teacher", "student"}))
      ->capture_default_str();
  verb->add_option("--pooling", e->pooling,
                   "embedding: cls token or mean of patch tokens (default: the run's "
                   "model.embedding)")
      ->check(CLI::IsMember({"cls", "mean"}));
  verb->add_option("--device", e->device,
                   "where the encoder runs: cpu, or cuda (cuda:<local rank>; a CUDA build of m3ret "
                   "and a GPU per local rank)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  verb->add_option("--split", e->split, "only samples of this split (default: all)");
  verb->add_option("--modalities", e->modalities,
                   "only these modalities (comma-separated or repeated; default: all)")
      ->delimiter(',');
  verb->add_option("--batch-size", e->batch_size, "samples per forward pass")
      ->check(CLI::Range(1, 1 << 20));
  verb->callback([opts, e, checkpoint, shards, out] {
    opts->load();  // validates --config/--set even though embed reads the checkpoint's config
    if (checkpoint->empty() && !e->raw_pixels && !e->histogram)
      throw Error("embed: --checkpoint is required (unless --raw-pixels or --histogram)");
    if (e->raw_pixels && e->histogram)
      throw Error("embed: --raw-pixels and --histogram exclude each other");
    start_mpi(opts->verbose);
    e->checkpoint = *checkpoint;
    e->shards = *shards;
    e->out = *out;
    eval::embed(*e, Runtime::get().world_comm());
  });
}

}  // namespace m3ret::launcher
