// Configuration of retrieval evaluation: the [eval] section.
//
//   [eval]
//   ks = [1, 5, 10]          # cut-offs of recall@k and precision@k
//   split = "test"           # samples evaluated ("" = every split)
//   cross_modal = true       # also queries of modality A against the gallery of B
//   relevance = "shared-label"  # or "same-labels" (exact label-set match)
//   bootstrap = 1000         # resamples of patients for the 95 % intervals (0 = none)
//   bootstrap_seed = 0       # seed of those resamples (mixed with the row name)
//   label_map = ""           # CSV label,concept[,modality]: labels -> concepts ("" = none)
//   exclude_labels = []      # labels (after mapping) dropped before relevance
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace m3ret::eval {

struct EvalConfig {
  std::vector<int64_t> ks = {1, 5, 10};
  std::string split = "test";
  bool cross_modal = true;
  std::string relevance = "shared-label";
  int64_t bootstrap = 1000;
  int64_t bootstrap_seed = 0;
  std::string label_map;                    // path; relative = against the current directory
  std::vector<std::string> exclude_labels;  // compared after mapping

  template <class V>
  void visit(V& v) {
    v("ks", ks, "cut-offs k of recall@k and precision@k (ascending, >= 1)", config::Range{1, 1e9});
    v("split", split, "split of the samples evaluated (\"\" = all splits)");
    v("cross_modal", cross_modal, "also evaluate modality A queries against modality B galleries");
    v("relevance", relevance,
      "when a retrieved sample is relevant: shares at least one label, or has the same label set",
      config::OneOf{{"shared-label", "same-labels"}});
    v("bootstrap", bootstrap,
      "resamples of the query patients for the 95 % intervals of recall@k and precision@k "
      "(0 = no intervals)",
      config::Range{0, 1e7});
    v("bootstrap_seed", bootstrap_seed, "seed of the bootstrap (mixed with each row's name)");
    v("label_map", label_map,
      "CSV file with columns label,concept[,modality]: each mapped label is replaced by its "
      "concept before relevance (\"\" = none)");
    v("exclude_labels", exclude_labels,
      "labels dropped before relevance, compared after mapping (e.g. [\"No Finding\"])");
  }
  // Throws config::Error naming the key: eval.ks empty, unsorted or with
  // duplicates; eval.bootstrap < 0; an empty entry of eval.exclude_labels.
  void validate() const;
};

// Root settings of `m3ret eval`.
struct Settings {
  EvalConfig eval;
  template <class V>
  void visit(V& v) {
    v.section("eval", eval);
  }
};

}  // namespace m3ret::eval
