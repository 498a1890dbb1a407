#include "eval/settings.h"

#include <fmt/format.h>

namespace m3ret::eval {

void EvalConfig::validate() const {
  if (ks.empty()) throw config::Error("eval.ks: must list at least one cut-off k");
  for (size_t i = 0; i < ks.size(); ++i) {
    if (ks[i] < 1) throw config::Error(fmt::format("eval.ks: k = {} must be >= 1", ks[i]));
    if (i && ks[i] <= ks[i - 1])
      throw config::Error(fmt::format(
          "eval.ks: values must be strictly ascending (got {} after {})", ks[i], ks[i - 1]));
  }
  if (relevance != "shared-label" && relevance != "same-labels")
    throw config::Error(
        fmt::format("eval.relevance: '{}' is not one of shared-label, same-labels", relevance));
  if (bootstrap < 0)
    throw config::Error(
        fmt::format("eval.bootstrap: {} must be >= 0 (0 = no intervals)", bootstrap));
  for (const auto& l : exclude_labels)
    if (l.empty()) throw config::Error("eval.exclude_labels: an entry is empty");
  if (whiten_dims < 0)
    throw config::Error(
        fmt::format("eval.whiten_dims: {} must be >= 0 (0 = no whitening)", whiten_dims));
  if (whiten_fit != "modality" && whiten_fit != "all")
    throw config::Error(
        fmt::format("eval.whiten_fit: '{}' is not one of modality, all", whiten_fit));
}

}  // namespace m3ret::eval
