// Judging a comparison of encoders, and summarising several seeds.
//
// Verdict: for every per-modality and cross-modal row of the first encoder
// (the one judged) with evaluated queries, at one cut-off k: its recall@k 95 %
// interval (Metrics::ci_recall) must lie entirely above the chance level
// (Metrics::chance_recall) to "beat chance", and entirely above another
// encoder's point recall@k to "beat" that encoder (strictly: lower bound >
// value). A row without an interval (eval.bootstrap = 0) beats nothing.
// Encoders without the row (or without queries in it) are not compared.
//
// Seeds: N reports of the same encoders and rows (e.g. the demo run with N
// training seeds) reduced to mean, sample standard deviation (n - 1; 0 for one
// report), min, max and the values of every metric.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/retrieval.h"

namespace m3ret::eval {

struct RowVerdict {
  struct Rival {
    std::string name;     // encoder
    double recall = 0.0;  // its point recall@k
    bool beaten = false;
  };
  std::string row;  // "xray", "ct->xray"
  int64_t k = 1;
  double recall = 0.0;  // the first encoder's recall@k
  bool has_interval = false;
  Interval ci;          // its 95 % interval (when has_interval)
  double chance = 0.0;  // chance recall@k of the row
  bool beats_chance = false;
  // The other encoders, in column order, except variants of the first (columns
  // named "<first>-...", e.g. "trained-cls" beside "trained"): its baselines.
  std::vector<Rival> rivals;
  bool beats_all() const;  // chance and every rival
};

// The verdict of every row of columns[0] with queries > 0 (per-modality rows,
// then cross-modal), at k. Throws m3ret::Error when columns is empty or k is
// not one of the first report's ks.
std::vector<RowVerdict> verdicts(const std::vector<std::pair<std::string, Report>>& columns,
                                 int64_t k);

// One plain sentence per row, e.g.
//   "xray R@1: trained 0.410 [0.330–0.490] beats chance 0.170, random-init 0.220, raw-pixels 0.180"
//   "ct->xray R@5: trained 0.550 [0.410–0.660] does NOT beat raw-pixels 0.580 (beats chance 0.390, random-init 0.200)"
// Unseen modalities of columns[0] are marked "(unseen)"; a row without an
// interval says "(no interval: eval.bootstrap = 0)".
std::vector<std::string> verdict_lines(const std::vector<std::pair<std::string, Report>>& columns,
                                       int64_t k);

// {"k": k, "rows": {"xray": {"recall": .., "ci95": [lo, hi] | null, "chance": ..,
//                            "beats_chance": true, "beats": {"random-init": true, ...}}, ...},
//  "probes": {"raw-pixels": {"checked": ["xray", ..., "ct->xray", ...],
//                            "above_chance": ["xray", "ct->xray"]}, ...}}   (probe_checks)
nlohmann::ordered_json verdict_json(const std::vector<std::pair<std::string, Report>>& columns,
                                    int64_t k);

// Shortcut probes: the columns after the first whose embeddings involve no
// learning, i.e. a random-init encoder, raw pixels or histograms
// (EmbeddingAttrs::encoder or random_init of Report::source; a file that does
// not record it is known by the column names "random-init", "raw-pixels",
// "histogram"). A probe whose recall@k 95 % interval lies entirely above chance
// in a row finds that row's class without having learned anything: the data let
// a shortcut through (colour, intensity, pixels that line up, or structure a
// random network already responds to), and part of any encoder's lead over
// chance there is that shortcut.
struct ProbeCheck {
  std::string probe;                    // the column's name
  std::vector<std::string> rows;        // the rows it was checked in (evaluated, with an interval)
  std::vector<std::string> above;       // those whose interval lies above chance, in report order
  std::vector<std::string> above_text;  // the same as "xray 0.380 [0.302–0.464] (chance 0.158)"
};
// One check per probe column, in column order, over its per-modality and then
// cross-modal rows with evaluated queries and an interval at k. Throws
// m3ret::Error when columns is empty or k is not one of the first report's ks.
std::vector<ProbeCheck> probe_checks(const std::vector<std::pair<std::string, Report>>& columns,
                                     int64_t k);
// One plain sentence per probe, e.g.
//   "raw-pixels R@1: above chance in xray 0.380 [0.302–0.464] (chance 0.158), ct 0.370
//    [0.286–0.448] (chance 0.158); 18 of 20 cross-modal rows above chance"
//   "histogram R@1: no modality above chance; 0 of 20 cross-modal rows above chance"
// (the cross-modal part only when there are such rows). Unseen modalities of
// columns[0] are marked "(unseen)". A probe with no interval in any row says
// "no interval (eval.bootstrap = 0): not checked".
std::vector<std::string> probe_lines(const std::vector<std::pair<std::string, Report>>& columns,
                                     int64_t k);
// The question probe_lines answer, as the heading above them in reports and on
// the console.
std::string probe_heading(int64_t k);
// "Verdict (recall@1: is the 95 % interval of trained above chance and above
// each other encoder?)": the heading above verdict_lines in reports and on the console.
std::string verdict_heading(const std::vector<std::pair<std::string, Report>>& columns, int64_t k);
// Console text: verdict_lines, then (when there are probes) probe_heading and
// probe_lines; every line but the probe heading indented by two spaces.
std::string verdict_text(const std::vector<std::pair<std::string, Report>>& columns, int64_t k);

// Summary of N report documents (version 2 or 1, read with reports_from_json)
// of the same encoders, rows and ks; `seeds` (empty, or one per report) names
// the seed of each report and is recorded as "seed_values":
//   {"seeds": N, "seed_values": [..], "ks": [..], "encoders": {name: {
//       "per_modality": {mod: {"recall@1": {"evaluated": n, "mean", "sd", "min", "max",
//                                           "values": [..]},
//                              ..., "precision@k": {..}, "map@K": {..},
//                              "per_label": {label: {"recall@k": {..},
//                                                    "chance": {"recall@k": {..}}}}}},
//       "cross_modal": {"a->b": {...}}}},
//    "verdicts": {"encoder": first encoder's name,
//                 "recall@k": {row: {"evaluated": n, "beats_chance": n, "beats_all": n}}},
//    "probe_checks": {"recall@k": {probe: {row: {"checked": n, "above_chance": n}}}}}
// Statistics are over the seeds where the row was evaluated ("evaluated" of
// them); an absent row's value is null in "values" and never counted as 0; a
// row absent in every seed has null mean, sd, min and max. "per_label" (rows
// whose reports break recall down per label) has every label of any seed, absent
// (null) in a seed whose row lacks it. "verdicts" counts, per k and row, the
// seeds where the first encoder's verdict (see verdicts()) beat chance, and
// beat chance and every other encoder. "probe_checks" (only when some column is a
// shortcut probe, see probe_checks()) counts, per k, probe and row, the seeds
// where the probe was checked there and those where its interval lay above chance.
// `names` (empty, or one per report, e.g. the files) name the reports in errors
// and are recorded as "reports".
// Throws m3ret::Error naming the report ("report 3 of 5", or its name) whose encoders, rows
// or ks differ from the first's, when `reports` is empty, or when `seeds` or `names` has
// another size.
nlohmann::ordered_json seed_summary(const std::vector<nlohmann::ordered_json>& reports,
                                    const std::vector<int64_t>& seeds = {},
                                    const std::vector<std::string>& names = {});

// Markdown of a seed_summary: first the verdict counts ("| xray | 3 of 3 | 2 of 3 |"
// per k: above chance, above chance and every other encoder); then, when there are
// probes, the probe counts at the first k ("| xray | 0 of 3 | 1 of 3 |", one column
// per probe, "—" where one was never checked); then per metric
// recall@k and map@K one table (rows: modalities, then pairs; columns: the
// encoders; cells "mean ± sd", with "(n of N seeds)" when the row was absent in
// some, "— (absent)" in all); last recall@k (the first k) per label of the
// per-modality rows, with the mean chance level.
std::string seed_summary_markdown(const nlohmann::ordered_json& summary);

}  // namespace m3ret::eval
