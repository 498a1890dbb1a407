#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "data/synth.h"
#include "launcher/verbs.h"

namespace m3ret::launcher {

namespace {
// OUT/synth.json marks a folder synth writes, from before its first file.
constexpr const char* kSynthMark = "synth.json";
}  // namespace

void claim_synth_dir(const std::filesystem::path& out, bool overwrite) {
  namespace stdfs = std::filesystem;
  std::error_code ec;
  if (stdfs::exists(out, ec) && !stdfs::is_directory(out, ec))
    throw Error(fmt::format("synth: --out {} exists and is not a folder", out.string()));
  if (stdfs::is_directory(out, ec) && !stdfs::exists(out / kSynthMark, ec)) {
    const stdfs::directory_iterator first(out);
    if (first != stdfs::directory_iterator())
      fs::refuse_or_overwrite(out,
                              {"synth",
                               "--out",
                               "files that synth did not write",
                               {first->path()},
                               "",
                               "which writes the dataset among them, replacing manifest.csv",
                               {}},
                              overwrite);
  }
  stdfs::create_directories(out);
  fs::write_atomic(out / kSynthMark,
                   nlohmann::json{{"format", "m3ret-synth"}, {"format_version", 1}}.dump() + "\n");
}

void add_synth_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "synth",
      "Generate a hybrid dataset (CT/MRI NIfTI, X-ray DICOM, ultrasound PNG, endoscopy "
      "MP4) with OUT/manifest.csv");
  auto opts = std::make_shared<CommonOptions>();
  auto out = std::make_shared<std::string>();
  auto overwrite = std::make_shared<bool>(false);
  opts->add_to(verb);
  verb->add_option("--out", *out, "output folder")->required();
  verb->add_flag("--overwrite", *overwrite,
                 "write into a folder that holds files synth did not write (manifest.csv and "
                 "files of the same names are replaced, the others kept)");
  verb->callback([opts, out, overwrite] {
    AppConfig cfg = opts->load();
    log::init(0, std::nullopt, opts->verbose);
    claim_synth_dir(*out, *overwrite);
    data::synthesize(cfg.data.synth, *out);
    spdlog::info("synth: wrote {}/manifest.csv", *out);
  });
}

}  // namespace m3ret::launcher
