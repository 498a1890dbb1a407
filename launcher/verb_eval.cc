#include <cstdio>

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/log.h"
#include "eval/embeddings_file.h"
#include "eval/report.h"
#include "eval/retrieval.h"
#include "launcher/verbs.h"

namespace m3ret::launcher {

void add_eval_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "eval", "Zero-shot retrieval: recall@k per modality and across modalities, from embeddings");
  auto opts = std::make_shared<CommonOptions>();
  auto embeddings = std::make_shared<std::string>();
  auto baseline = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  opts->add_to(verb);
  verb->add_option("--embeddings", *embeddings, "embeddings file written by `m3ret embed`")
      ->required()
      ->check(CLI::ExistingFile);
  verb->add_option("--baseline", *baseline,
                   "a second embeddings file (e.g. --random-init) shown beside the first")
      ->check(CLI::ExistingFile);
  verb->add_option("--out", *out, "report (.json); a Markdown twin is written beside it")
      ->required();
  verb->callback([opts, embeddings, baseline, out] {
    AppConfig cfg = opts->load();
    log::init(0, std::nullopt, opts->verbose);
    std::vector<std::pair<std::string, eval::Report>> columns;
    columns.emplace_back("encoder",
                         eval::evaluate(eval::read_embeddings(*embeddings), cfg.eval.eval));
    if (!baseline->empty()) {
      columns.emplace_back("baseline",
                           eval::evaluate(eval::read_embeddings(*baseline), cfg.eval.eval));
    }
    write_reports(*out, columns);
    std::printf("%s", eval::comparison_text(columns).c_str());
  });
}

void write_reports(const std::filesystem::path& json_path,
                   const std::vector<std::pair<std::string, eval::Report>>& columns) {
  auto md = json_path;
  md.replace_extension(".md");
  if (columns.size() == 1) {
    eval::write_report(json_path, columns[0].second);  // REPORT.json + REPORT.md
  } else {
    // Several encoders side by side: one JSON holding each report, one Markdown table.
    nlohmann::ordered_json j = {{"format", "m3ret-retrieval-comparison"}, {"format_version", 1}};
    for (const auto& [name, report] : columns) j["columns"][name] = eval::to_json(report);
    fs::write_atomic(json_path, j.dump(2) + "\n");
    fs::write_atomic(md, eval::comparison_table(columns, {"mri"}));
  }
  spdlog::info("eval: wrote {} and {}", json_path.string(), md.string());
}

}  // namespace m3ret::launcher
