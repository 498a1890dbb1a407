// Retrieval reports: JSON (machine-readable, versioned), Markdown and plain
// text, and comparison tables of several encoders side by side.
//
// JSON layout (format "m3ret-retrieval-report", format_version 1):
//   {"format": ..., "format_version": 1, "split": "test", "relevance": "shared-label",
//    "ks": [1, 5, 10], "samples": 240,
//    "embeddings": {"checkpoint": "...", "step": 1000, "random_init": false,
//                   "train_modalities": ["xray", "ct"]},   ([] = unknown)
//    "unseen_modalities": ["mri"],   (evaluated but not in train_modalities)
//    "per_modality": {"xray": {"queries": 40, "skipped_no_label": 0,
//                              "skipped_no_relevant": 0, "gallery": 40,
//                              "recall@1": 0.5, ..., "precision@1": 0.5, ..., "map@10": 0.4}},
//    "cross_modal": {"ct->mri": {...same keys...}}}
// Object keys of per_modality/cross_modal keep the report's row order
// (nlohmann::ordered_json). train_modalities and unseen_modalities are optional
// when reading (older reports: unknown, none).
#pragma once

#include <filesystem>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/retrieval.h"

namespace m3ret::eval {

inline constexpr const char* kReportFormat = "m3ret-retrieval-report";
inline constexpr int64_t kReportFormatVersion = 1;

nlohmann::ordered_json to_json(const Report& report);
// Inverse of to_json. Throws m3ret::Error naming `origin` (a file name or
// "report") when the format, version or a field is wrong.
Report report_from_json(const nlohmann::ordered_json& j, const std::string& origin = "report");

// Several encoders evaluated on the same samples: the first is "the" encoder,
// the others its baselines (e.g. {{"trained", r1}, {"random init", r2},
// {"raw pixels", r3}}). JSON: the first report's layout at top level, plus
//   "encoder": "<first name>",
//   "baselines": {"<name>": {"embeddings": {...}, "per_modality": {...},
//                            "cross_modal": {...}}, ...}
// (split, relevance, ks and samples are shared with the top level).
nlohmann::ordered_json to_json(const std::vector<std::pair<std::string, Report>>& columns);
// Inverse: the encoder first, then the baselines in file order.
std::vector<std::pair<std::string, Report>> reports_from_json(const nlohmann::ordered_json& j,
                                                              const std::string& origin = "report");
// One CSV row per (encoder, row): encoder,kind,query_modality,gallery_modality,
// queries,gallery,recall@k...,precision@k...,map@K (kind = per_modality | cross_modal).
std::string to_csv(const std::vector<std::pair<std::string, Report>>& columns);

// Writes `path` (JSON, as above), and beside it `path` with ".md" (Markdown:
// one report's tables, or the side-by-side comparison, with the encoder's
// training modalities and its unseen ones marked) and ".csv", each
// atomically. Throws m3ret::Error naming the path.
void write_reports(const std::filesystem::path& path,
                   const std::vector<std::pair<std::string, Report>>& columns);
// write_reports with one column named "encoder".
void write_report(const std::filesystem::path& path, const Report& report);
Report read_report(const std::filesystem::path& path);

// The modalities the encoder (the first column) was not trained on: its
// Report::unseen. These are the ones comparison tables mark " (unseen)".
std::set<std::string> unseen_modalities(const std::vector<std::pair<std::string, Report>>& columns);

// One report as Markdown: a per-modality table (queries, recall@k,
// precision@k, map@K) and a cross-modal table; the training modalities are
// listed and unseen modalities marked " (unseen)".
std::string to_markdown(const Report& report);

// Several encoders side by side, e.g. {{"trained", r1}, {"random init", r2}}.
// One Markdown table per modality (rows: recall@k for each k, then map@K;
// columns: the encoders; the heading gives the number of queries), then one
// cross-modal table (rows: pairs; cells "R@1 / R@5 / R@10"). Modalities in
// `unseen` get " (unseen)" after their name. A modality missing from a column
// shows "—". Every column must use the same ks (throws m3ret::Error otherwise).
std::string comparison_table(const std::vector<std::pair<std::string, Report>>& columns,
                             const std::set<std::string>& unseen = {});
// The same content as aligned plain text for the console.
std::string comparison_text(const std::vector<std::pair<std::string, Report>>& columns,
                            const std::set<std::string>& unseen = {});

}  // namespace m3ret::eval
