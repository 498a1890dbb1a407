// Configuration of retrieval evaluation: the [eval] section.
//
//   [eval]
//   ks = [1, 5, 10]          # cut-offs of recall@k and precision@k
//   split = "test"           # samples evaluated ("" = every split)
//   cross_modal = true       # also queries of modality A against the gallery of B
//   relevance = "shared-label"  # or "same-labels" (exact label-set match)
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

  template <class V>
  void visit(V& v) {
    v("ks", ks, "cut-offs k of recall@k and precision@k (ascending, >= 1)",
      config::Range{1, 1e9});
    v("split", split, "split of the samples evaluated (\"\" = all splits)");
    v("cross_modal", cross_modal, "also evaluate modality A queries against modality B galleries");
    v("relevance", relevance,
      "when a retrieved sample is relevant: shares at least one label, or has the same label set",
      config::OneOf{{"shared-label", "same-labels"}});
  }
  // Throws config::Error naming eval.ks when it is empty, unsorted or has duplicates.
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
