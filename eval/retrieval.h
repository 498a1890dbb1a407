// Zero-shot retrieval metrics over an EmbeddingSet (exact search).
//
// Similarity is the cosine: rows are L2-normalised here (a zero row stays zero)
// and compared by dot product. For every query the candidates are ranked by
// similarity, highest first; equal similarities are ordered by sample index
// (position in the set), so results are deterministic.
//
// Per modality (leave-one-out): every sample of the modality (in the selected
// split) is a query against all the others of that modality. Candidates in the
// query's group are excluded (an empty group means the sample is its own
// group). A candidate is relevant when it shares at least one label with the
// query ("shared-label"), or has exactly the query's label set ("same-labels").
// A query without labels is skipped (skipped_no_label); a query with no
// relevant candidate is skipped (skipped_no_relevant; of these,
// skipped_no_candidate had no candidate at all because every gallery sample is
// the query's own patient). Skipped queries count in no metric.
//
// Absent rows: a row whose every query was skipped (queries == 0) has no
// figure. Its metric values are 0 in memory only; reports never print them as
// numbers (JSON null with an "absent" reason, empty CSV cells, "—" in tables)
// and summaries leave the row out of means. absent_reason() says why.
//
// Cross-modal (config.cross_modal): for every ordered pair A != B of modalities
// present whose label vocabularies intersect, queries of A against the whole
// gallery of B, with the same group exclusion and relevance.
//
// Unseen modalities: the per-modality rows whose modality is not in
// set.attrs.train_modalities (the checkpoint run's train.modalities), in row
// order; none when that list is empty (unknown, e.g. raw pixels).
//
// Labels: with config.label_map, each label is first replaced by its concept
// (eval/label_map.h), then config.exclude_labels are dropped; relevance, the
// skipped_no_label count and the cross-modal vocabularies use these labels.
//
// Whitening (config.whiten_dims = d > 0): before the cosine, rows are
// PCA-whitened to d dimensions (eval/whitening.h), fitted without labels on
// the rows of config.whiten_split of the same set (all rows when ""). With
// whiten_fit "modality", a modality's per-modality row uses a whitening
// fitted on that modality's fit rows; a modality with no fit row at all (an
// unseen modality kept out of the training data) and every cross-modal row
// use one fitted on all fit rows pooled, so queries and gallery share one
// space. With "all", every row uses the pooled one. Report::whitening records
// which fit each row used and how many directions it kept: fewer than d when
// its rows span fewer (fit_whitening), each such fit also a line of
// Report::warnings. Throws m3ret::Error when the fit split selects no row
// (naming the splits present) or a fit is impossible (fewer than 2 rows, or
// all the same vector; naming the rows).
//
// Degenerate embeddings: evaluate() still reports figures but records in
// Report::warnings how many embeddings are all zero and whether all of them
// (or all of one modality) are the same vector — their rankings are by
// position only.
//
// Metrics, averaged over the evaluated queries:
//   recall@k     1 if any of the top k candidates is relevant, else 0
//   precision@k  (relevant among the top k) / k
//   map@K        K = the largest k (map@10 by default): mean over queries of
//                AP@K = (1 / min(R, K)) * sum_{i<=K, rel_i} precision@i, with R
//                the number of relevant candidates of the query (so a query
//                whose top min(R, K) are all relevant scores 1)
//
// Per label (Metrics::per_label): the row's evaluated queries that carry the
// label (after mapping), so a query with two labels counts under both. With
// shared-label relevance a candidate is relevant to (query, label) when it
// carries that label: per_label["nodule"].recall[5] answers "for a query with
// a nodule, is a nodule among its top 5?" (a query none of whose candidates
// carries the label does not count under it); with same-labels relevance it is the
// row's exact-set relevance, grouped by the query's labels. Chance and the 95 %
// interval (over the label's query patients, seeded with "<row>#<label>") are
// computed as for the row. Single-label data: the labels' figures, weighted by
// their queries, average to the row's.
//
// Chance level (per row, averaged over the same queries): the expectation of
// recall@k and precision@k under a uniformly random ranking of the query's n
// candidates (after group exclusion) with R relevant:
//   chance recall@k    = 1 - C(n-R, k) / C(n, k) = 1 - prod_{i<k} (n-R-i)/(n-i)  (1 when k >= n)
//   chance precision@k = R / max(n, k)   (R/n; below n candidates the k slots are not all filled)
//
// 95 % intervals (config.bootstrap > 0 resamples): a percentile bootstrap over
// the row's query patients (the query's group; an empty group = its own
// patient). Each resample draws as many patients as the row has, with
// replacement; its statistic is the mean over all queries of the drawn
// patients (a patient drawn twice counts twice). The interval is the 2.5th and
// 97.5th percentile of the resampled statistics (linear interpolation between
// order statistics). Deterministic: std::mt19937_64 seeded with
// config.bootstrap_seed mixed with the row name (bootstrap_seed_for), uniform
// indices by rejection (the same on every standard library).
//
// Cost: O(n_q * n_g * D) for the similarities (one BLAS sgemm per block of 64
// queries) plus O(n_g log K) per query for a partial sort; memory beyond the
// embeddings: O(64 * n_g) floats, never the n_q x n_g similarity matrix.
// Thread-safe (pure function of its arguments; BLAS may use several threads).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "eval/embeddings_file.h"
#include "eval/settings.h"

namespace m3ret::eval {

struct Interval {
  double lo = 0.0, hi = 0.0;
  bool operator==(const Interval& o) const { return lo == o.lo && hi == o.hi; }
};

// recall@k of the queries of one label (see "Per label" above).
struct LabelMetrics {
  int64_t queries = 0;
  std::map<int64_t, double> recall;         // k -> recall@k
  std::map<int64_t, double> chance_recall;  // k -> expected recall@k of a random ranking
  std::map<int64_t, Interval> ci_recall;    // k -> 95 % interval; empty as for the row
};

struct Metrics {
  int64_t queries = 0;                         // evaluated queries
  int64_t skipped_no_label = 0;                // queries without any label
  int64_t skipped_no_relevant = 0;             // queries with no relevant candidate
  int64_t skipped_no_candidate = 0;            // of those: no candidate from another patient at all
  int64_t gallery = 0;                         // samples in the gallery (before group exclusion)
  std::map<int64_t, double> recall;            // k -> recall@k (0 when queries == 0)
  std::map<int64_t, double> precision;         // k -> precision@k
  int64_t map_k = 0;                           // K of map@K (the largest k)
  double map_at_k = 0.0;                       // mean average precision at K
  std::map<int64_t, double> chance_recall;     // k -> expected recall@k of a random ranking
  std::map<int64_t, double> chance_precision;  // k -> expected precision@k of a random ranking
  // k -> 95 % bootstrap interval; empty when there is none (eval.bootstrap = 0,
  // no evaluated query, or a report without intervals).
  std::map<int64_t, Interval> ci_recall;
  std::map<int64_t, Interval> ci_precision;
  // label -> recall@k of the evaluated queries that carry it, by label name;
  // empty for an absent row.
  std::map<std::string, LabelMetrics> per_label;

  // False for an absent row: no query could be evaluated (see above).
  bool evaluated() const { return queries > 0; }
};

// Why a row is absent, e.g. "no evaluable query: 3 without a label, 2 with no
// candidate from another patient (too few patients)"; "" when m.evaluated().
std::string absent_reason(const Metrics& m);

struct ReportRow {
  std::string query_modality;
  std::string gallery_modality;  // == query_modality for the per-modality rows
  Metrics metrics;
  // "ct" for a per-modality row, "ct->xray" for a cross-modal row.
  std::string name() const;
};

// Which rows a whitening was fitted on: a modality's own, or "all" pooled.
struct WhiteningFit {
  std::string fitted_on;  // modality name, or "all"
  int64_t rows = 0;       // fit rows
  int64_t dims = 0;       // directions kept: eval.whiten_dims, or fewer when the rows span fewer
  bool operator==(const WhiteningFit& o) const {
    return fitted_on == o.fitted_on && rows == o.rows && dims == o.dims;
  }
};

struct Report {
  std::vector<int64_t> ks;
  std::string split;                    // "" = all splits
  std::string relevance;                // "shared-label" | "same-labels"
  int64_t samples = 0;                  // samples in the selected split
  EmbeddingAttrs source;                // where the embeddings came from
  std::vector<ReportRow> per_modality;  // data::modality_names() order, then others sorted
  std::vector<ReportRow> cross_modal;   // ordered pairs, same order
  // Evaluated modalities the encoder was not trained on (see above).
  std::vector<std::string> unseen;
  int64_t bootstrap = 0;  // resamples behind the intervals (0 = none)
  int64_t bootstrap_seed = 0;
  std::string label_map;                    // eval.label_map ("" = none)
  std::vector<std::string> exclude_labels;  // eval.exclude_labels
  int64_t whiten_dims = 0;                  // eval.whiten_dims (0 = no whitening)
  std::string whiten_split, whiten_fit;     // eval.whiten_split, eval.whiten_fit
  // With whitening: for each evaluated modality, and "cross_modal", the fit
  // its rows were whitened with. Empty without whitening.
  std::map<std::string, WhiteningFit> whitening;
  // Why the figures may mean nothing: all-zero embeddings, or embeddings that
  // are all the same vector (in the set or in one modality). Empty = none.
  std::vector<std::string> warnings;

  // The row of `modality` (or "a->b"), nullptr if absent.
  const ReportRow* find(const std::string& name) const;
};

// Evaluates `set` (checked with set.check) as described above. Throws
// m3ret::Error when config.split selects no sample (naming the splits present),
// when config.label_map cannot be read or parsed (naming file and line), or
// when the whitening cannot be fitted (see "Whitening").
Report evaluate(const EmbeddingSet& set, const EvalConfig& config);

// Chance levels of one query with n candidates, R of them relevant (0 <= R <= n).
double chance_recall_at(int64_t n, int64_t R, int64_t k);
double chance_precision_at(int64_t n, int64_t R, int64_t k);

// The bootstrap's seed for the row `row` ("ct", "ct->xray").
uint64_t bootstrap_seed_for(int64_t seed, const std::string& row);

// Percentile-bootstrap 95 % intervals of the means of several per-query
// series at once (the same resampled patients for all): patient[i] is the
// patient of query i, series[s][i] its value in series s. Returns one interval
// per series; all {0, 0} when there is no query. resamples >= 1.
std::vector<Interval> bootstrap_intervals(const std::vector<int64_t>& patient,
                                          const std::vector<std::vector<double>>& series,
                                          int64_t resamples, uint64_t seed);

// Ranking of one query (exposed for tests and `m3ret search`): indices into
// `gallery` of the top `k` by similarity to `query` (both L2-normalised rows
// of length D), highest first, ties by lower gallery position. `excluded[i]`
// (if non-empty) removes gallery entry i. gallery: n*D floats.
std::vector<int64_t> top_k(const float* query, const float* gallery, int64_t n, int64_t D,
                           int64_t k, const std::vector<char>& excluded = {});

}  // namespace m3ret::eval
