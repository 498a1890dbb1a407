// `m3ret index build`: an INDEX folder (exact or FAISS) from an embeddings file.
#include <cstdio>

#include <spdlog/spdlog.h>

#include "core/log.h"
#include "eval/index_dir.h"
#include "launcher/verbs.h"

namespace m3ret::launcher {

void add_index_verb(CLI::App& app) {
  auto* verb =
      app.add_subcommand("index", "Retrieval indices over embeddings (see `index build --help`)");
  verb->require_subcommand(1);
  auto* build = verb->add_subcommand(
      "build", "Build an INDEX folder from an embeddings file, for `m3ret search`");
  auto opts = std::make_shared<CommonOptions>();
  auto o = std::make_shared<eval::IndexBuildOptions>();
  auto embeddings = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  opts->add_to(build);
  build->add_option("--embeddings", *embeddings, "embeddings file written by `m3ret embed`")
      ->required()
      ->check(CLI::ExistingFile);
  build->add_option("--out", *out, "INDEX folder to create")->required();
  build
      ->add_option("--type", o->type,
                   "exact | flat | hnsw[M][,ef_construction=E][,ef_search=S] | "
                   "ivf[N][,nprobe=P] (docs/evaluation.md)")
      ->capture_default_str();
  build->add_option("--split", o->split, "only samples of this split (default: all)");
  build->add_flag("--overwrite", o->overwrite, "replace an existing INDEX folder");
  build->callback([opts, o, embeddings, out] {
    opts->load();  // validates --config/--set
    log::init(0, std::nullopt, opts->verbose);
    o->embeddings = *embeddings;
    o->out = *out;
    const auto info = eval::build_index_dir(*o);
    std::printf("index %s: %s over %lld embeddings of dimension %lld\n", out->c_str(),
                info.at("type").get<std::string>().c_str(),
                static_cast<long long>(info.at("count").get<int64_t>()),
                static_cast<long long>(info.at("dim").get<int64_t>()));
    std::fflush(stdout);
  });
}

}  // namespace m3ret::launcher
