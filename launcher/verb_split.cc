#include <map>
#include <set>

#include <spdlog/spdlog.h>

#include "core/log.h"
#include "data/manifest.h"
#include "data/split.h"
#include "launcher/verbs.h"

namespace m3ret::launcher {

void add_split_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "split", "Fill a manifest's split column with a patient-level (group) train/val/test split");
  auto opts = std::make_shared<CommonOptions>();
  auto manifest = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto ratios = std::make_shared<std::string>("0.8,0.1,0.1");
  auto split_opts = std::make_shared<data::SplitOptions>();
  opts->add_to(verb);
  verb->add_option("--manifest", *manifest, "manifest CSV (path,modality,labels,group,split)")
      ->required()
      ->check(CLI::ExistingFile);
  verb->add_option("--out", *out, "manifest CSV to write (may be --manifest itself)")->required();
  verb->add_option("--ratios", *ratios, "fractions of groups for TRAIN,VAL,TEST")
      ->capture_default_str();
  verb->add_option("--seed", split_opts->seed, "seed of the assignment")->capture_default_str();
  verb->add_flag(
      "--stratify-by-label", split_opts->stratify,
      "split the groups of each label set separately, so every label set is in every split");
  verb->callback([opts, manifest, out, ratios, split_opts] {
    opts->load();  // validates --config/--set like every verb
    log::init(0, std::nullopt, opts->verbose);
    split_opts->ratios = data::parse_ratios(*ratios);
    auto rows = data::read_manifest(*manifest);
    data::assign_splits(rows, *split_opts, *manifest);
    data::write_manifest(*out, rows);
    std::map<std::string, std::pair<std::set<std::string>, int64_t>> per;  // split -> groups, rows
    for (const auto& row : rows) {
      per[row.split].first.insert(row.group);
      ++per[row.split].second;
    }
    for (const auto& [split, n] : per) {
      spdlog::info("split: {} {} groups, {} rows", split, n.first.size(), n.second);
    }
    spdlog::info("split: wrote {} ({} rows)", *out, rows.size());
  });
}

}  // namespace m3ret::launcher
