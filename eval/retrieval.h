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
// relevant candidate is skipped (skipped_no_relevant). Skipped queries count in
// no metric.
//
// Cross-modal (config.cross_modal): for every ordered pair A != B of modalities
// present whose label vocabularies intersect, queries of A against the whole
// gallery of B, with the same group exclusion and relevance.
//
// Unseen modalities: the per-modality rows whose modality is not in
// set.attrs.train_modalities (the checkpoint run's train.modalities), in row
// order; none when that list is empty (unknown, e.g. raw pixels).
//
// Metrics, averaged over the evaluated queries:
//   recall@k     1 if any of the top k candidates is relevant, else 0
//   precision@k  (relevant among the top k) / k
//   map@K        K = the largest k (map@10 by default): mean over queries of
//                AP@K = (1 / min(R, K)) * sum_{i<=K, rel_i} precision@i, with R
//                the number of relevant candidates of the query (so a query
//                whose top min(R, K) are all relevant scores 1)
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

struct Metrics {
  int64_t queries = 0;              // evaluated queries
  int64_t skipped_no_label = 0;     // queries without any label
  int64_t skipped_no_relevant = 0;  // queries with no relevant candidate
  int64_t gallery = 0;              // samples in the gallery (before group exclusion)
  std::map<int64_t, double> recall;     // k -> recall@k (0 when queries == 0)
  std::map<int64_t, double> precision;  // k -> precision@k
  int64_t map_k = 0;                    // K of map@K (the largest k)
  double map_at_k = 0.0;                // mean average precision at K
};

struct ReportRow {
  std::string query_modality;
  std::string gallery_modality;  // == query_modality for the per-modality rows
  Metrics metrics;
  // "ct" for a per-modality row, "ct->xray" for a cross-modal row.
  std::string name() const;
};

struct Report {
  std::vector<int64_t> ks;
  std::string split;         // "" = all splits
  std::string relevance;     // "shared-label" | "same-labels"
  int64_t samples = 0;       // samples in the selected split
  EmbeddingAttrs source;     // where the embeddings came from
  std::vector<ReportRow> per_modality;  // data::modality_names() order, then others sorted
  std::vector<ReportRow> cross_modal;   // ordered pairs, same order
  // Evaluated modalities the encoder was not trained on (see above).
  std::vector<std::string> unseen;

  // The row of `modality` (or "a->b"), nullptr if absent.
  const ReportRow* find(const std::string& name) const;
};

// Evaluates `set` (checked with set.check) as described above. Throws
// m3ret::Error when config.split selects no sample (naming the splits present).
Report evaluate(const EmbeddingSet& set, const EvalConfig& config);

// Ranking of one query (exposed for tests and `m3ret search`): indices into
// `gallery` of the top `k` by similarity to `query` (both L2-normalised rows
// of length D), highest first, ties by lower gallery position. `excluded[i]`
// (if non-empty) removes gallery entry i. gallery: n*D floats.
std::vector<int64_t> top_k(const float* query, const float* gallery, int64_t n, int64_t D,
                           int64_t k, const std::vector<char>& excluded = {});

}  // namespace m3ret::eval
