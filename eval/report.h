// Retrieval reports: JSON (machine-readable, versioned), CSV, Markdown and
// plain text, and comparison tables of several encoders side by side.
//
// JSON layout (format "m3ret-retrieval-report", format_version 2), the same
// for one report and for a comparison of several encoders on the same samples:
//   {"format": ..., "format_version": 2, "split": "test", "relevance": "shared-label",
//    "ks": [1, 5, 10], "samples": 240, "bootstrap": 1000, "bootstrap_seed": 0,
//    "label_map": "", "exclude_labels": [],
//    "whiten_dims": 0,   (eval.whiten_dims; with whitening also "whiten_split", "whiten_fit")
//    "unseen_modalities": ["mri"],          (the first encoder's)
//    "encoders": {"trained": {
//        "embeddings": {"checkpoint": "...", "step": 1000, "random_init": false,
//                       "encoder": "checkpoint", "weights": "teacher", "pooling": "cls",
//                       "train_modalities": ["xray", "ct"]},   ([] = unknown)
//        "unseen_modalities": ["mri"],
//        "warnings": [],   (all-zero or constant embeddings, eval/retrieval.h)
//        "whitening": {"xray": {"fitted_on": "xray", "rows": 192, "dims": 64}, ...,
//                      "cross_modal": {"fitted_on": "all", "rows": 768, "dims": 64}}
//                     (whitening only: Report::whitening)
//        "per_modality": {"xray": {"queries": 40, "skipped_no_label": 0,
//                                  "skipped_no_relevant": 0, "skipped_no_candidate": 0,
//                                  "gallery": 40,
//                                  "recall@1": 0.5, ..., "precision@1": 0.5, ..., "map@10": 0.4,
//                                  "ci95": {"recall@1": [0.4, 0.6], ..., "precision@1": [..], ...},
//                                  "chance": {"recall@1": 0.2, ..., "precision@1": 0.2, ...},
//                                  "per_label": {"nodule": {"queries": 20, "recall@1": 0.6, ...,
//                                                "ci95": {"recall@1": [..], ...},
//                                                "chance": {"recall@1": 0.2, ...}}}}},
//        "cross_modal": {"ct->mri": {...same keys...}}},
//      "random-init": {...same layout...}},
//    "verdict": {"k": 1, "rows": {...}}}      (eval/stats.h, verdict_json)
// A row with no evaluated query (eval/retrieval.h) has null recall, precision,
// map and chance values, no "ci95", and "absent": "<reason>", e.g.
//   "mri": {"queries": 0, ..., "absent": "no evaluable query: 1 with no candidate
//           from another patient (too few patients)", "recall@1": null, ...}
// "ci95" is absent when the row has no interval (eval.bootstrap = 0 or no
// evaluated query). "per_label" (recall@k per label, eval/retrieval.h) is
// absent in absent rows and in reports written before it. Object keys keep the order of encoders and rows
// (nlohmann::ordered_json). Version 1 files (the encoder's metrics at top
// level, others under "baselines") are still read; their rows have no
// intervals and chance levels of 0.
#pragma once

#include <filesystem>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/retrieval.h"
#include "eval/stats.h"  // verdicts and seed summaries of these reports

namespace m3ret::eval {

inline constexpr const char* kReportFormat = "m3ret-retrieval-report";
inline constexpr int64_t kReportFormatVersion = 2;

// One report as a version-2 document with the single encoder "encoder".
nlohmann::ordered_json to_json(const Report& report);
// The first encoder's report of a version 2 or 1 document. Throws m3ret::Error
// naming `origin` (a file name or "report") when the format, version or a
// field is wrong.
Report report_from_json(const nlohmann::ordered_json& j, const std::string& origin = "report");

// Several encoders evaluated on the same samples, e.g. {{"trained", r1},
// {"random-init", r2}, {"raw-pixels", r3}}; the first is "the" encoder (its
// unseen modalities at top level; "verdict" judges it at verdict_k, 0 =
// ks.front()). split, relevance, ks, samples and the bootstrap and label
// settings are the first report's. Throws m3ret::Error for two encoders of one
// name or a verdict_k not in ks.
nlohmann::ordered_json to_json(const std::vector<std::pair<std::string, Report>>& columns,
                               int64_t verdict_k = 0);
// Inverse: every encoder, in file order (version 1: the encoder, then its baselines).
std::vector<std::pair<std::string, Report>> reports_from_json(const nlohmann::ordered_json& j,
                                                              const std::string& origin = "report");
// One CSV row per (encoder, row): encoder,kind,query_modality,gallery_modality,
// queries,gallery,recall@k...,precision@k...,map@K,chance_recall@k...,
// chance_precision@k...,recall@k_lo,recall@k_hi...,precision@k_lo,precision@k_hi...
// ...,absent (kind = per_modality | cross_modal; interval cells empty when
// there is none; an absent row has every metric cell empty and its reason in
// the last column).
std::string to_csv(const std::vector<std::pair<std::string, Report>>& columns);

// Writes `path` (JSON, as above), and beside it `path` with ".md" (Markdown:
// one report's tables, or the side-by-side comparison followed by the verdict
// lines at verdict_k (0 = ks.front()), with the encoder's training modalities
// and its unseen ones marked) and ".csv", each atomically. Throws m3ret::Error
// naming the path.
void write_reports(const std::filesystem::path& path,
                   const std::vector<std::pair<std::string, Report>>& columns,
                   int64_t verdict_k = 0);
// write_reports with one column named "encoder".
void write_report(const std::filesystem::path& path, const Report& report);
// The JSON of a report file; throws m3ret::Error naming the file when it is not JSON.
nlohmann::ordered_json read_report_json(const std::filesystem::path& path);
// The first encoder's report / every encoder of a report file (version 2 or 1).
Report read_report(const std::filesystem::path& path);
std::vector<std::pair<std::string, Report>> read_reports(const std::filesystem::path& path);

// The modalities the encoder (the first column) was not trained on: its
// Report::unseen. These are the ones comparison tables mark " (unseen)".
std::set<std::string> unseen_modalities(const std::vector<std::pair<std::string, Report>>& columns);

// "- readout: PCA whitening to 64 dimensions, then cosine, fitted ...: xray on its own 192
// rows; mri, cross-modal rows on all modalities' 768 rows pooled\n"
// saying how the rows were whitened (Report::whitening), or "" without whitening.
std::string whitening_line(const Report& report);

// One report as Markdown: a per-modality table (queries, recall@k and
// precision@k each with its 95 % interval "0.410 [0.330–0.490]", map@K, and
// the chance level of recall@k) and a cross-modal table; the training
// modalities are listed and unseen modalities marked " (unseen)".
std::string to_markdown(const Report& report);

// Several encoders side by side, e.g. {{"trained", r1}, {"random init", r2}}.
// One Markdown table per modality (rows: recall@k for each k, then map@K;
// columns: the encoders, then "chance"; cells "0.410 [0.330–0.490]" with the
// 95 % interval when there is one; the heading gives the number of queries),
// then one cross-modal table per k (rows: pairs; columns: the encoders, then
// "chance"). The chance level is the first column's that has the row. Modalities in
// `unseen` get " (unseen)" after their name. A modality missing from a column
// shows "—". Every column must use the same ks (throws m3ret::Error otherwise).
std::string comparison_table(const std::vector<std::pair<std::string, Report>>& columns,
                             const std::set<std::string>& unseen = {});
// The same content as aligned plain text for the console.
std::string comparison_text(const std::vector<std::pair<std::string, Report>>& columns,
                            const std::set<std::string>& unseen = {});

}  // namespace m3ret::eval
