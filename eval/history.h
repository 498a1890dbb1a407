// The eval history of a run: RUN/eval/history.jsonl, one JSON object per
// evaluated checkpoint, appended by `m3ret eval --checkpoint`
// (docs/evaluation.md):
//   {"format": "m3ret-eval-history", "format_version": 1, "step", "checkpoint",
//    "time" (UTC, ISO 8601), "report" (absolute path), "split", "relevance",
//    "whiten_dims" (the readout: 0 = cosine, d = whitened to d dimensions),
//    "unseen_modalities", "warnings", "per_modality", "cross_modal" (the
//    evaluated encoder's rows as in the report), "baselines" (the other
//    encoders' parts of the report's "encoders")}
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/retrieval.h"

namespace m3ret::eval {

inline constexpr const char* kHistoryFormat = "m3ret-eval-history";
inline constexpr int64_t kHistoryFormatVersion = 1;

// RUN/eval/history.jsonl for a checkpoint RUN/checkpoints/step-N; "" when the
// checkpoint is not in a run folder.
std::filesystem::path history_of_checkpoint(const std::filesystem::path& checkpoint);

// The history line of a report (written at `report_path`) of `columns`, the
// evaluated encoder first; `time` is its UTC timestamp.
nlohmann::ordered_json history_line(const std::filesystem::path& report_path,
                                    const std::vector<std::pair<std::string, Report>>& columns,
                                    const std::string& time);

// Appends the line (timestamped now) to `history`, creating its folder, with
// one write() on an O_APPEND descriptor so that concurrent evaluations of one
// run append whole lines. Throws m3ret::Error naming the file.
void append_history(const std::filesystem::path& history, const std::filesystem::path& report_path,
                    const std::vector<std::pair<std::string, Report>>& columns);

// The run folder of a checkpoint in RUN/checkpoints/, "" for a checkpoint elsewhere.
std::filesystem::path run_of_checkpoint(const std::filesystem::path& checkpoint);

// Writes the evaluated encoder's recall@k to RUN/tensorboard/eval (a TensorBoard run beside the
// trainer's RUN/tensorboard) as scalars of the checkpoint's step: "eval/recall@K/ROW" for every evaluated row
// (modalities, cross-modal pairs "a->b") and "eval/recall@K/mean" over the evaluated
// modalities; absent rows are left out, never written as 0. A whitened report
// (Report::whiten_dims = d > 0) writes "eval-whitened<d>/..." instead of "eval/...", so the two
// readouts never share a curve. Throws m3ret::Error naming the file.
void append_tensorboard(const std::filesystem::path& run_dir, const Report& report);

}  // namespace m3ret::eval
