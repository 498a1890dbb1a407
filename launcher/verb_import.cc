#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "data/importers.h"
#include "launcher/verbs.h"

namespace m3ret::launcher {

void add_import_verb(CLI::App& app) {
  std::string names;
  for (const auto& imp : data::importers()) names += "\n  " + imp.name + ": " + imp.summary;
  auto* verb = app.add_subcommand(
      "import", "Turn a public dataset layout into a manifest. Datasets:" + names);
  auto opts = std::make_shared<CommonOptions>();
  auto name = std::make_shared<std::string>();
  auto import_opts = std::make_shared<data::ImportOptions>();
  auto root = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  opts->add_to(verb);
  verb->add_option("name", *name, "dataset layout (see above)")
      ->required()
      ->check(CLI::Validator(
          [](std::string& v) {
            std::vector<std::string> known;
            for (const auto& imp : data::importers()) {
              if (imp.name == v) return std::string();
              known.push_back(imp.name);
            }
            return fmt::format("unknown dataset '{}' (known: {})", v, fmt::join(known, ", "));
          },
          "DATASET"));
  verb->add_option("--root", *root, "the dataset folder as downloaded")->required();
  verb->add_option("--out", *out, "manifest CSV to write (MedMNIST images go next to it)")
      ->required();
  verb->add_option("--modality", import_opts->modality,
                   "modality for every row (required by 'folder'; overrides the others' default)");
  verb->add_option("--labels", import_opts->labels_csv,
                   "CSV of labels by id (PatientID/StudyInstanceUID for dicom, file name or path "
                   "for the others); "
                   "rows whose id it lacks are skipped");
  verb->add_option("--id-column", import_opts->id_column, "--labels column holding the id")
      ->capture_default_str();
  verb->add_option("--labels-column", import_opts->labels_column,
                   "--labels column holding '|'-separated labels")
      ->capture_default_str();
  verb->add_option("--split-column", import_opts->split_column,
                   "--labels column holding train/val/test (default: keep the importer's split)");
  auto options = std::make_shared<std::vector<std::string>>();
  verb->add_option(
      "--option", *options,
      "importer option KEY=VALUE (repeatable; each dataset's options are listed above)");
  auto overwrite = std::make_shared<bool>(false);
  verb->add_flag("--overwrite", *overwrite,
                 "replace an existing --out manifest (and what the importer writes beside it)");
  verb->callback([opts, name, import_opts, root, out, options, overwrite] {
    opts->load();  // validates --config/--set like every verb
    try {
      for (const auto& o : *options) data::parse_import_option(o, *import_opts);
      data::check_import_options(*name, *import_opts);
    } catch (const Error& e) {
      throw config::Error(fmt::format("--option: {}", e.what()));  // a usage error
    }
    log::init(0, std::nullopt, opts->verbose);
    // A manifest may hold a user's edits (labels, splits): never replaced silently.
    if (std::filesystem::exists(*out)) {
      fs::EarlierOutput earlier{
          "import", "--out", "a manifest",
          {*out},   "",      "which replaces it and the files the importer writes beside it",
          {}};
      fs::refuse_or_overwrite(std::filesystem::absolute(*out).parent_path(), earlier, *overwrite);
    }
    import_opts->root = *root;
    import_opts->out = *out;
    const data::ImportResult r = data::import_dataset(*name, *import_opts);
    std::map<std::string, int64_t> per;
    for (const auto& row : r.rows)
      ++per[row.modality + "/" + (row.split.empty() ? "-" : row.split)];
    for (const auto& [key, n] : per) spdlog::info("import {}: {} {} samples", *name, n, key);
    if (!r.skipped.empty()) {
      spdlog::warn(
          "import {}: {} inputs skipped (listed with reasons next to the manifest, *.skipped.csv); "
          "first: {}",
          *name, r.skipped.size(), r.skipped.front());
    }
    spdlog::info("import {}: wrote {} ({} rows)", *name, *out, r.rows.size());
  });
}

}  // namespace m3ret::launcher
