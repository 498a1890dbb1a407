#include <spdlog/spdlog.h>

#include "core/log.h"
#include "data/synth.h"
#include "launcher/verbs.h"

namespace m3ret::launcher {

void add_synth_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "synth",
      "Generate a hybrid dataset (CT/MRI NIfTI, X-ray DICOM, ultrasound PNG, endoscopy "
      "MP4) with OUT/manifest.csv");
  auto opts = std::make_shared<CommonOptions>();
  auto out = std::make_shared<std::string>();
  opts->add_to(verb);
  verb->add_option("--out", *out, "output folder")->required();
  verb->callback([opts, out] {
    AppConfig cfg = opts->load();
    log::init(0, std::nullopt, opts->verbose);
    data::synthesize(cfg.data.synth, *out);
    spdlog::info("synth: wrote {}/manifest.csv", *out);
  });
}

}  // namespace m3ret::launcher
