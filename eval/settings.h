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
//   whiten_dims = 0          # PCA whitening to d dims before the cosine (0 = none)
//   whiten_split = "train"   # rows the whitening is fitted on (no labels used)
//   whiten_fit = "modality"  # one whitening per modality, or "all" modalities pooled
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
  int64_t whiten_dims = 0;                  // 0 = cosine on the embeddings as they are
  std::string whiten_split = "train";
  std::string whiten_fit = "modality";

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
    v("whiten_dims", whiten_dims,
      "PCA-whiten the embeddings to this many dimensions before the cosine, fitted without "
      "labels on the rows of eval.whiten_split (0 = no whitening; docs/evaluation.md)",
      config::Range{0, 1e6});
    v("whiten_split", whiten_split,
      "split whose rows the whitening is fitted on (\"\" = all rows); it must be embedded too");
    v("whiten_fit", whiten_fit,
      "modality: each modality's rows whitened as fitted on that modality's fit rows (a modality "
      "without any, and cross-modal rows, use all fit rows pooled); all: one whitening for all",
      config::OneOf{{"modality", "all"}});
  }
  // Throws config::Error naming the key: eval.ks empty, unsorted or with
  // duplicates; eval.bootstrap < 0; an empty entry of eval.exclude_labels;
  // eval.whiten_dims < 0; eval.whiten_fit not modality or all.
  void validate() const;
  // The split to embed for evaluating the rows of `evaluated`: itself, or ""
  // (every split) when the whitening is fitted on another split.
  std::string embed_split(const std::string& evaluated) const {
    return whiten_dims > 0 && whiten_split != evaluated ? std::string() : evaluated;
  }
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
