// Label map: dataset labels -> shared concepts, applied before relevance
// (eval.label_map, eval.exclude_labels; docs/evaluation.md).
//
// The file is CSV (RFC 4180) with a header naming the columns `label` and
// `concept` (required) and `modality` (optional; empty = any modality), in any
// order; other columns are ignored:
//
//   label,concept,modality
//   Pneumonia,pneumonia,
//   Lung Opacity,pneumonia,xray
//   pneumonia_ct,pneumonia,ct
//
// Every label of a sample that has a mapping is replaced by its concept: an
// entry scoped to the sample's modality wins over an unscoped one; labels
// without a mapping stay as they are. Then labels listed in `exclude` (compared
// after mapping) are dropped, so a sample may be left without labels (its
// query then counts as skipped_no_label).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "eval/embeddings_file.h"

namespace m3ret::eval {

struct LabelMap {
  // (modality, label) -> concept; modality "" = any modality.
  std::map<std::pair<std::string, std::string>, std::string> entries;

  // The concept of `label` for a sample of `modality` (label itself when unmapped).
  const std::string& apply(const std::string& modality, const std::string& label) const;
};

// Parses the CSV text of a label map. Throws m3ret::Error "<origin>:<line>: ..."
// for a missing label or concept column, an empty label or concept, or a label
// mapped twice for the same modality.
LabelMap parse_label_map(const std::string& text, const std::string& origin);
// Reads `path` (relative paths resolve against the current directory). Throws
// m3ret::Error naming the file when it cannot be read, or as parse_label_map.
LabelMap read_label_map(const std::filesystem::path& path);

// The labels of every sample of `set` after mapping with `map` and dropping
// `exclude`: sorted, without duplicates, one vector per sample.
std::vector<std::vector<std::string>> relevance_labels(const EmbeddingSet& set, const LabelMap& map,
                                                       const std::vector<std::string>& exclude);

}  // namespace m3ret::eval
