// `m3ret export`: a checkpoint's encoder as safetensors for Python users.
#include <cstdio>

#include "launcher/verbs.h"
#include "model/export.h"

namespace m3ret::launcher {

void add_export_verb(CLI::App& app) {
  auto* verb =
      app.add_subcommand("export",
                         "Write a checkpoint's encoder (and optionally the objective's heads) as "
                         "safetensors with timm-like names (docs/model.md)");
  auto checkpoint = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto heads = std::make_shared<bool>(false);
  auto weights = std::make_shared<std::string>("student");
  verb->add_option("--checkpoint", *checkpoint, "checkpoint folder, or a run folder (its latest)")
      ->required()
      ->check(CLI::ExistingDirectory);
  verb->add_option("--out", *out, "output file (.safetensors), written atomically")->required();
  verb->add_flag("--heads", *heads,
                 "also write the objective's parts (MAE decoder, SimDINO heads and teacher) "
                 "under objective.*");
  verb->add_option("--weights", *weights,
                   "encoder to write: student (the trained encoder), teacher (SimDINO's EMA "
                   "teacher) or auto (the teacher when there is one, as `m3ret embed`)")
      ->check(CLI::IsMember({"auto", "teacher", "student"}))
      ->capture_default_str();
  verb->callback([checkpoint, out, heads, weights] {
    const auto r = trainer::export_checkpoint(*checkpoint, *out, *heads, *weights);
    std::printf("%s: %lld tensors, %lld values from %s (step %lld, %s)\n", out->c_str(),
                (long long)r.tensors, (long long)r.parameters, r.checkpoint.string().c_str(),
                (long long)r.step, r.weights.c_str());
  });
}

}  // namespace m3ret::launcher
