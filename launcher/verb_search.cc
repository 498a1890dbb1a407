// `m3ret search`: the k indexed cases most similar to a study file.
#include <cstdio>

#include <spdlog/spdlog.h>

#include "core/log.h"
#include "eval/search.h"
#include "launcher/verbs.h"

namespace m3ret::launcher {

void add_search_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "search",
      "Find the k cases of an index most similar to a study (DICOM series folder, NIfTI, PNG, "
      "video)");
  auto opts = std::make_shared<CommonOptions>();
  auto o = std::make_shared<eval::SearchOptions>();
  auto index = std::make_shared<std::string>();
  auto checkpoint = std::make_shared<std::string>();
  auto query = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  opts->add_to(verb);
  verb->add_option("--index", *index, "INDEX folder (m3ret index build)")->required();
  verb->add_option("--checkpoint", *checkpoint,
                   "checkpoint or run folder (its latest) that encoded the index")
      ->required()
      ->check(CLI::ExistingDirectory);
  verb->add_option("--query", *query, "study file, or a DICOM series folder")
      ->required()
      ->check(CLI::ExistingPath);
  verb->add_option("--k", o->k, "number of results")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  verb->add_option(
      "--modality", o->modality,
      "modality of the query (default: endoscopy for videos, else the index's only one)");
  verb->add_option("--only", o->only_modality, "keep only results of this modality");
  verb->add_option("--weights", o->weights,
                   "network that encodes the query: teacher, student or auto (default: the one "
                   "that encoded the index)")
      ->check(CLI::IsMember({"auto", "teacher", "student"}));
  verb->add_option("--pooling", o->pooling, "cls or mean (default: the index's)")
      ->check(CLI::IsMember({"cls", "mean"}));
  verb->add_flag("--json", *json, "print JSON instead of a table");
  verb->callback([opts, o, index, checkpoint, query, json] {
    opts->load();
    log::init(0, std::nullopt, opts->verbose);
    o->checkpoint = *checkpoint;
    o->query = *query;
    const auto opened = eval::open_index_dir(*index);
    const auto result = eval::search_file(opened, *o);
    if (*json)
      std::printf("%s\n", eval::to_json(result).dump(2).c_str());
    else
      std::printf("%s", eval::to_table(result).c_str());
    std::fflush(stdout);
  });
}

}  // namespace m3ret::launcher
