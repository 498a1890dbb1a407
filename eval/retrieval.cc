#include "eval/retrieval.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/hash.h"
#include "data/sample.h"
#include "eval/label_map.h"
#include "eval/whitening.h"

// BLAS (OpenBLAS through Debian's alternatives), Fortran interface.
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n,
                       const int* k, const float* alpha, const float* a, const int* lda,
                       const float* b, const int* ldb, const float* beta, float* c, const int* ldc);

namespace m3ret::eval {
namespace {

constexpr int64_t kQueryBlock = 64;  // queries whose similarity rows are held at once

float dot(const float* a, const float* b, int64_t D) {
  // Four independent accumulators let the compiler vectorise the loop.
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t j = 0;
  for (; j + 4 <= D; j += 4) {
    s0 += a[j] * b[j];
    s1 += a[j + 1] * b[j + 1];
    s2 += a[j + 2] * b[j + 2];
    s3 += a[j + 3] * b[j + 3];
  }
  for (; j < D; ++j) s0 += a[j] * b[j];
  return (s0 + s1) + (s2 + s3);
}

// Orders candidates by similarity (desc), then position (asc).
struct Ranked {
  float score;
  int64_t pos;       // position in the gallery
  bool rel = false;  // relevant to the query (rank_all only)
  bool operator<(const Ranked& o) const { return score != o.score ? score > o.score : pos < o.pos; }
};

// The samples of the evaluated split, prepared for ranking.
struct Prepared {
  int64_t D = 0;
  std::vector<float> Y;                                     // n*D normalised rows
  std::vector<std::vector<int>> labels;                     // sorted label ids per row
  std::vector<std::string> label_names;                     // label id -> name
  std::vector<int64_t> group;                               // group id per row (unique when empty)
  std::map<std::string, std::vector<int64_t>> by_modality;  // rows, ascending
};

// `labels`: the relevance labels of every sample of `set` (relevance_labels).
Prepared prepare(const EmbeddingSet& set, const std::vector<int64_t>& selected,
                 const std::vector<std::vector<std::string>>& labels) {
  Prepared p;
  p.D = set.D;
  const int64_t n = static_cast<int64_t>(selected.size());
  p.Y.resize(static_cast<size_t>(n * set.D));
  std::unordered_map<std::string, int> label_id;
  std::unordered_map<std::string, int64_t> group_id;
  for (int64_t r = 0; r < n; ++r) {
    const int64_t i = selected[r];
    const float* x = set.row(i);
    double norm2 = 0;
    for (int64_t j = 0; j < set.D; ++j) norm2 += static_cast<double>(x[j]) * x[j];
    const float inv = norm2 > 0 ? static_cast<float>(1.0 / std::sqrt(norm2)) : 0.0f;
    float* y = p.Y.data() + r * set.D;
    for (int64_t j = 0; j < set.D; ++j) y[j] = x[j] * inv;

    std::vector<int> ls;
    for (const auto& l : labels[i]) {
      auto [it, added] = label_id.emplace(l, static_cast<int>(label_id.size()));
      if (added) p.label_names.push_back(l);
      ls.push_back(it->second);
    }
    std::sort(ls.begin(), ls.end());
    ls.erase(std::unique(ls.begin(), ls.end()), ls.end());
    p.labels.push_back(std::move(ls));

    if (set.groups[i].empty()) {
      p.group.push_back(-1 - r);  // its own group
    } else {
      auto it = group_id.emplace(set.groups[i], static_cast<int64_t>(group_id.size())).first;
      p.group.push_back(it->second);
    }
    p.by_modality[set.modality[i]].push_back(r);
  }
  return p;
}

bool shares_label(const std::vector<int>& a, const std::vector<int>& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (a[i] == b[j]) return true;
    if (a[i] < b[j])
      ++i;
    else
      ++j;
  }
  return false;
}

// Per evaluated query: its patient and its recall@k / precision@k per k (index
// into ks), kept for the bootstrap.
struct QueryResults {
  std::vector<int64_t> patient;
  std::vector<std::vector<double>> recall, precision;  // [k index][query]
};

// Fills m.ci_recall / m.ci_precision from the per-query results.
void add_intervals(Metrics& m, const QueryResults& q, const EvalConfig& config,
                   const std::string& row) {
  if (config.bootstrap <= 0 || q.patient.empty()) return;
  std::vector<std::vector<double>> series = q.recall;
  series.insert(series.end(), q.precision.begin(), q.precision.end());
  const auto ci = bootstrap_intervals(q.patient, series, config.bootstrap,
                                      bootstrap_seed_for(config.bootstrap_seed, row));
  const size_t nk = config.ks.size();
  for (size_t i = 0; i < nk; ++i) {
    m.ci_recall[config.ks[i]] = ci[i];
    m.ci_precision[config.ks[i]] = ci[nk + i];
  }
}

bool has_label(const std::vector<int>& labels, int l) {
  return std::binary_search(labels.begin(), labels.end(), l);
}

// The queries of one label: their patients, hits per k (index into ks) and
// summed chance levels, for Metrics::per_label.
struct LabelQueries {
  QueryResults results;        // precision unused
  std::vector<double> chance;  // [k index], summed over the queries
};

// Metrics of `queries` (rows) ranked against `gallery` (rows, ascending);
// `row` names the report row (seeds its bootstrap).
Metrics rank_all(const Prepared& p, const std::vector<int64_t>& queries,
                 const std::vector<int64_t>& gallery, const EvalConfig& config,
                 const std::string& row_name) {
  const bool exact = config.relevance == "same-labels";
  const int64_t kmax = config.ks.empty() ? 1 : config.ks.back();
  const int64_t ng = static_cast<int64_t>(gallery.size());
  const size_t nk = config.ks.size();
  Metrics m;
  m.gallery = ng;
  std::map<int64_t, double> chance_r, chance_p;
  QueryResults qr_all;
  qr_all.recall.resize(nk);
  qr_all.precision.resize(nk);
  std::map<int, LabelQueries> by_label;  // label id -> its queries
  double ap_sum = 0;
  std::vector<float> sims(static_cast<size_t>(kQueryBlock * ng));
  std::vector<float> qblock(static_cast<size_t>(kQueryBlock * p.D));
  std::vector<float> G(static_cast<size_t>(ng * p.D));  // the gallery rows, contiguous
  for (int64_t g = 0; g < ng; ++g)
    std::copy_n(p.Y.data() + gallery[g] * p.D, p.D, G.data() + g * p.D);
  std::vector<Ranked> cand;

  for (size_t b0 = 0; b0 < queries.size(); b0 += kQueryBlock) {
    const size_t b1 = std::min(queries.size(), b0 + kQueryBlock);
    // Similarity rows of this block, sims[q][g] = <Q_q, G_g>: one BLAS product.
    // Column-major view: S^T (ng x b) = G^T' (ng x D) * Q^T (D x b).
    for (size_t q = b0; q < b1; ++q)
      std::copy_n(p.Y.data() + queries[q] * p.D, p.D, qblock.data() + (q - b0) * p.D);
    if (ng > 0) {
      const int m_ = static_cast<int>(ng), n_ = static_cast<int>(b1 - b0),
                k_ = static_cast<int>(p.D);
      const float one = 1.0f, zero = 0.0f;
      sgemm_("T", "N", &m_, &n_, &k_, &one, G.data(), &k_, qblock.data(), &k_, &zero, sims.data(),
             &m_);
    }
    for (size_t q = b0; q < b1; ++q) {
      const int64_t qr = queries[q];
      const auto& ql = p.labels[qr];
      if (ql.empty()) {
        ++m.skipped_no_label;
        continue;
      }
      const float* row = sims.data() + (q - b0) * ng;
      cand.clear();
      int64_t R = 0;
      for (int64_t g = 0; g < ng; ++g) {
        const int64_t gr = gallery[g];
        if (gr == qr || p.group[gr] == p.group[qr]) continue;
        const bool rel = exact ? p.labels[gr] == ql : shares_label(p.labels[gr], ql);
        R += rel;
        cand.push_back({row[g], g, rel});
      }
      if (R == 0) {
        ++m.skipped_no_relevant;
        m.skipped_no_candidate += cand.empty();
        continue;
      }
      const int64_t n = static_cast<int64_t>(cand.size());
      const int64_t L = std::min<int64_t>(n, kmax);
      std::partial_sort(cand.begin(), cand.begin() + L, cand.end());

      ++m.queries;
      qr_all.patient.push_back(p.group[qr]);
      // hits_at[i] = relevant among the top i+1.
      std::vector<int64_t> hits_at(static_cast<size_t>(L));
      int64_t hits = 0;
      double ap = 0;
      for (int64_t i = 0; i < L; ++i) {
        if (cand[i].rel) {
          ++hits;
          ap += static_cast<double>(hits) / static_cast<double>(i + 1);
        }
        hits_at[i] = hits;
      }
      for (size_t ki = 0; ki < nk; ++ki) {
        const int64_t k = config.ks[ki];
        const int64_t h = hits_at[std::min(k, L) - 1];  // k beyond the candidates: all of them
        qr_all.recall[ki].push_back(h > 0 ? 1.0 : 0.0);
        qr_all.precision[ki].push_back(static_cast<double>(h) / static_cast<double>(k));
        chance_r[k] += chance_recall_at(n, R, k);
        chance_p[k] += chance_precision_at(n, R, k);
      }
      ap_sum += ap / static_cast<double>(std::min(R, kmax));

      // Per label: the row's relevance (same-labels), or "carries this label",
      // which for a query of one label is the row's relevance too.
      std::vector<int64_t> own_hits;
      for (int l : ql) {
        const std::vector<int64_t>* hits_l = &hits_at;
        int64_t R_l = R;
        if (!exact && ql.size() > 1) {
          R_l = 0;
          for (const auto& c : cand) R_l += has_label(p.labels[gallery[c.pos]], l);
          if (R_l == 0) continue;  // no candidate carries it: not a query of this label
          own_hits.assign(static_cast<size_t>(L), 0);
          int64_t h = 0;
          for (int64_t i = 0; i < L; ++i) {
            h += has_label(p.labels[gallery[cand[i].pos]], l);
            own_hits[i] = h;
          }
          hits_l = &own_hits;
        }
        LabelQueries& lq = by_label[l];
        if (lq.results.recall.empty()) {
          lq.results.recall.resize(nk);
          lq.chance.resize(nk);
        }
        lq.results.patient.push_back(p.group[qr]);
        for (size_t ki = 0; ki < nk; ++ki) {
          const int64_t k = config.ks[ki];
          lq.results.recall[ki].push_back((*hits_l)[std::min(k, L) - 1] > 0 ? 1.0 : 0.0);
          lq.chance[ki] += chance_recall_at(n, R_l, k);
        }
      }
    }
  }
  const double nq = static_cast<double>(m.queries);
  for (size_t ki = 0; ki < nk; ++ki) {
    const int64_t k = config.ks[ki];
    const auto& rs = qr_all.recall[ki];
    const auto& ps = qr_all.precision[ki];
    m.recall[k] = m.queries ? std::accumulate(rs.begin(), rs.end(), 0.0) / nq : 0.0;
    m.precision[k] = m.queries ? std::accumulate(ps.begin(), ps.end(), 0.0) / nq : 0.0;
    m.chance_recall[k] = m.queries ? chance_r[k] / nq : 0.0;
    m.chance_precision[k] = m.queries ? chance_p[k] / nq : 0.0;
  }
  m.map_k = kmax;
  m.map_at_k = m.queries ? ap_sum / nq : 0.0;
  add_intervals(m, qr_all, config, row_name);
  for (const auto& [l, lq] : by_label) {
    LabelMetrics& lm = m.per_label[p.label_names[static_cast<size_t>(l)]];
    lm.queries = static_cast<int64_t>(lq.results.patient.size());
    const double n_l = static_cast<double>(lm.queries);
    for (size_t ki = 0; ki < nk; ++ki) {
      const auto& rs = lq.results.recall[ki];
      lm.recall[config.ks[ki]] = std::accumulate(rs.begin(), rs.end(), 0.0) / n_l;
      lm.chance_recall[config.ks[ki]] = lq.chance[ki] / n_l;
    }
    if (config.bootstrap > 0) {
      const auto ci = bootstrap_intervals(
          lq.results.patient, lq.results.recall, config.bootstrap,
          bootstrap_seed_for(config.bootstrap_seed,
                             row_name + "#" + p.label_names[static_cast<size_t>(l)]));
      for (size_t ki = 0; ki < nk; ++ki) lm.ci_recall[config.ks[ki]] = ci[ki];
    }
  }
  return m;
}

// Uniform in [0, n) (n >= 1) by rejection: the same sequence on every standard library.
uint64_t uniform_below(std::mt19937_64& gen, uint64_t n) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  const uint64_t limit = max - max % n;  // a multiple of n
  for (;;) {
    const uint64_t r = gen();
    if (r < limit) return r % n;
  }
}

// Linear interpolation between order statistics (numpy's default), q in [0, 1].
double percentile(std::vector<double>& v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t i = static_cast<size_t>(pos);
  const double frac = pos - static_cast<double>(i);
  return i + 1 < v.size() ? v[i] + frac * (v[i + 1] - v[i]) : v[i];
}

// True when every row of `rows` equals the first (bit for bit, after normalisation).
bool all_equal(const Prepared& p, const std::vector<int64_t>& rows) {
  const float* first = p.Y.data() + rows.front() * p.D;
  for (int64_t r : rows)
    if (!std::equal(first, first + p.D, p.Y.data() + r * p.D)) return false;
  return true;
}

// Warnings about embeddings whose figures mean nothing: zero rows (similar to
// nothing, ranked by position only) and modalities whose rows are all equal.
std::vector<std::string> degenerate_warnings(const Prepared& p,
                                             const std::vector<std::string>& order) {
  std::vector<std::string> out;
  const int64_t n = static_cast<int64_t>(p.labels.size());
  int64_t zero = 0;
  for (int64_t r = 0; r < n; ++r) {
    const float* y = p.Y.data() + r * p.D;
    zero += std::all_of(y, y + p.D, [](float v) { return v == 0.0f; });
  }
  if (zero > 0)
    out.push_back(
        fmt::format("{} of the {} embeddings are all zero: they are equally similar to "
                    "everything and rank by position only",
                    zero, n));
  std::vector<int64_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  if (n > 1 && zero < n && all_equal(p, all)) {
    out.push_back(
        fmt::format("all {} embeddings are the same vector (constant): every ranking is "
                    "by position only and the figures say nothing about the encoder",
                    n));
    return out;
  }
  for (const auto& m : order) {
    const auto& rows = p.by_modality.at(m);
    if (rows.size() > 1 && all_equal(p, rows) && zero < n)
      out.push_back(
          fmt::format("all {} embeddings of {} are the same vector: its rankings are by "
                      "position only",
                      rows.size(), m));
  }
  return out;
}

std::vector<std::string> modality_order(const Prepared& p) {
  std::vector<std::string> order;
  for (const auto& name : data::modality_names())
    if (p.by_modality.count(name)) order.push_back(name);
  for (const auto& [name, rows] : p.by_modality)  // names outside the known list, sorted
    if (std::find(order.begin(), order.end(), name) == order.end()) order.push_back(name);
  return order;
}

// "splits present: test, train" for errors about a split that selects nothing.
std::string splits_present(const EmbeddingSet& set) {
  std::set<std::string> present(set.splits.begin(), set.splits.end());
  std::vector<std::string> names;
  for (const auto& s : present) names.push_back(s.empty() ? "\"\"" : s);
  return names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "));
}

// `set` with every row whitened by `w`, `width` values each (the kept ones, then zeros).
EmbeddingSet whitened_copy(const EmbeddingSet& set, const Whitening& w, int64_t width) {
  EmbeddingSet out = set;
  out.D = width;
  out.X = w.apply(set.X.data(), set.N, width);
  return out;
}

// The embeddings that per-modality rows and cross-modal rows rank when
// config.whiten_dims > 0 (see "Whitening" in retrieval.h), which fit each
// used, and a warning for every fit that kept fewer directions than asked.
struct WhitenedSets {
  EmbeddingSet per_modality, cross_modal;
  std::map<std::string, WhiteningFit> fits;
  std::vector<std::string> warnings;
};

WhitenedSets whiten(const EmbeddingSet& set, const std::vector<int64_t>& selected,
                    const EvalConfig& config) {
  const int64_t d = config.whiten_dims;
  const std::string encoder = set.attrs.encoder.empty() ? "" : set.attrs.encoder + " ";
  auto fit_rows = [&](const std::string& modality) {
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < set.N; ++i)
      if ((config.whiten_split.empty() || set.splits[i] == config.whiten_split) &&
          (modality.empty() || set.modality[i] == modality))
        rows.push_back(i);
    return rows;
  };
  auto describe = [&](size_t n, const std::string& modality) {
    return fmt::format("the {} {}rows{} of split '{}'", n, encoder,
                       modality.empty() ? "" : " of " + modality, config.whiten_split);
  };
  WhitenedSets out;
  auto fit = [&](const std::vector<int64_t>& rows, const std::string& modality) {
    const std::string what = describe(rows.size(), modality);
    Whitening w = fit_whitening(set.X.data(), set.D, rows, d, what);
    if (w.d < d)
      out.warnings.push_back(fmt::format(
          "whitening: {} span only {} directions (of dimension {}), so they are whitened to {}, "
          "not eval.whiten_dims = {}",
          what, w.d, set.D, w.d, d));
    return w;
  };
  const auto all = fit_rows("");
  if (all.empty())
    throw Error(fmt::format(
        "eval.whiten_split = '{}' selects none of the {} embeddings to fit the whitening on "
        "(splits present: {}); embed that split too (`m3ret embed` without --split)",
        config.whiten_split, set.N, splits_present(set)));
  const Whitening pooled = fit(all, "");
  out.cross_modal = whitened_copy(set, pooled, d);
  out.fits["cross_modal"] = {"all", pooled.fit_rows, pooled.d};
  out.per_modality = out.cross_modal;
  std::set<std::string> evaluated;
  for (int64_t i : selected) evaluated.insert(set.modality[i]);
  for (const auto& m : evaluated) {
    const auto rows = config.whiten_fit == "modality" ? fit_rows(m) : std::vector<int64_t>{};
    if (rows.empty()) {
      out.fits[m] = out.fits["cross_modal"];
      continue;
    }
    const Whitening own = fit(rows, m);
    out.fits[m] = {m, own.fit_rows, own.d};
    for (int64_t i = 0; i < set.N; ++i)
      if (set.modality[i] == m) {
        const auto y = own.apply(set.row(i), 1, d);
        std::copy(y.begin(), y.end(), out.per_modality.X.begin() + i * d);
      }
  }
  return out;
}

}  // namespace

std::string ReportRow::name() const {
  return query_modality == gallery_modality ? query_modality
                                            : query_modality + "->" + gallery_modality;
}

std::string absent_reason(const Metrics& m) {
  if (m.evaluated()) return "";
  std::vector<std::string> parts;
  const int64_t no_relevant = m.skipped_no_relevant - m.skipped_no_candidate;
  if (m.skipped_no_label > 0)
    parts.push_back(fmt::format("{} without a label", m.skipped_no_label));
  if (m.skipped_no_candidate > 0)
    parts.push_back(fmt::format("{} with no candidate from another patient (too few patients)",
                                m.skipped_no_candidate));
  if (no_relevant > 0)
    parts.push_back(
        fmt::format("{} with no relevant item (no candidate shares a label)", no_relevant));
  if (parts.empty()) return "no query sample";
  return fmt::format("no evaluable query: {}", fmt::join(parts, ", "));
}

const ReportRow* Report::find(const std::string& name) const {
  for (const auto* rows : {&per_modality, &cross_modal})
    for (const auto& r : *rows)
      if (r.name() == name) return &r;
  return nullptr;
}

double chance_recall_at(int64_t n, int64_t R, int64_t k) {
  M3RET_CHECK(R >= 0 && R <= n && k >= 1, "chance_recall_at: n = {}, R = {}, k = {}", n, R, k);
  if (R == 0) return 0.0;
  if (k >= n) return 1.0;
  double none = 1.0;  // probability that none of the top k is relevant
  for (int64_t i = 0; i < k && none > 0; ++i)
    none *= static_cast<double>(n - R - i) / static_cast<double>(n - i);
  return 1.0 - std::max(none, 0.0);
}

double chance_precision_at(int64_t n, int64_t R, int64_t k) {
  M3RET_CHECK(R >= 0 && R <= n && k >= 1, "chance_precision_at: n = {}, R = {}, k = {}", n, R, k);
  return static_cast<double>(R) / static_cast<double>(std::max(n, k));
}

uint64_t bootstrap_seed_for(int64_t seed, const std::string& row) {
  uint64_t h = 0xCBF29CE484222325ULL;  // FNV-1a 64 of the row name
  for (unsigned char c : row) h = (h ^ c) * 0x100000001B3ULL;
  return splitmix64(static_cast<uint64_t>(seed) ^ splitmix64(h));
}

std::vector<Interval> bootstrap_intervals(const std::vector<int64_t>& patient,
                                          const std::vector<std::vector<double>>& series,
                                          int64_t resamples, uint64_t seed) {
  M3RET_CHECK(resamples >= 1, "bootstrap_intervals: {} resamples", resamples);
  std::vector<Interval> out(series.size());
  if (patient.empty()) return out;
  for (const auto& v : series)
    M3RET_CHECK(v.size() == patient.size(),
                "bootstrap_intervals: a series has {} values for {} queries", v.size(),
                patient.size());
  // Per patient (dense, in order of first appearance): queries and sums per series.
  std::unordered_map<int64_t, size_t> dense;
  std::vector<double> count;
  std::vector<std::vector<double>> sums(series.size());
  for (size_t i = 0; i < patient.size(); ++i) {
    auto [it, fresh] = dense.emplace(patient[i], count.size());
    if (fresh) {
      count.push_back(0);
      for (auto& s : sums) s.push_back(0);
    }
    count[it->second] += 1;
    for (size_t s = 0; s < series.size(); ++s) sums[s][it->second] += series[s][i];
  }
  const uint64_t P = count.size();
  std::mt19937_64 gen(seed);
  std::vector<std::vector<double>> stats(series.size(),
                                         std::vector<double>(static_cast<size_t>(resamples)));
  std::vector<double> acc(series.size());
  for (int64_t b = 0; b < resamples; ++b) {
    double n = 0;
    std::fill(acc.begin(), acc.end(), 0.0);
    for (uint64_t d = 0; d < P; ++d) {
      const uint64_t j = uniform_below(gen, P);
      n += count[j];
      for (size_t s = 0; s < series.size(); ++s) acc[s] += sums[s][j];
    }
    for (size_t s = 0; s < series.size(); ++s) stats[s][b] = acc[s] / n;
  }
  for (size_t s = 0; s < series.size(); ++s)
    out[s] = {percentile(stats[s], 0.025), percentile(stats[s], 0.975)};
  return out;
}

Report evaluate(const EmbeddingSet& set, const EvalConfig& config) {
  set.check("embeddings");
  config.validate();
  std::vector<int64_t> selected;
  for (int64_t i = 0; i < set.N; ++i)
    if (config.split.empty() || set.splits[i] == config.split) selected.push_back(i);
  if (selected.empty())
    throw Error(
        fmt::format("eval.split = '{}' selects none of the {} embeddings (splits present: {})",
                    config.split, set.N, splits_present(set)));

  const LabelMap map = config.label_map.empty() ? LabelMap{} : read_label_map(config.label_map);
  const auto labels = relevance_labels(set, map, config.exclude_labels);
  const Prepared p = prepare(set, selected, labels);
  // What the rows rank: the embeddings as they are, or whitened (per-modality
  // rows and cross-modal rows may use different fits).
  std::optional<Prepared> white_mod, white_cross;
  std::vector<std::string> whitening_warnings;
  Report report;
  if (config.whiten_dims > 0) {
    WhitenedSets w = whiten(set, selected, config);
    white_mod.emplace(prepare(w.per_modality, selected, labels));
    white_cross.emplace(prepare(w.cross_modal, selected, labels));
    report.whitening = std::move(w.fits);
    whitening_warnings = std::move(w.warnings);
  }
  const Prepared& ranked_mod = white_mod ? *white_mod : p;
  const Prepared& ranked_cross = white_cross ? *white_cross : p;
  report.ks = config.ks;
  report.split = config.split;
  report.relevance = config.relevance;
  report.samples = static_cast<int64_t>(selected.size());
  report.source = set.attrs;
  report.bootstrap = config.bootstrap;
  report.bootstrap_seed = config.bootstrap_seed;
  report.label_map = config.label_map;
  report.exclude_labels = config.exclude_labels;
  report.whiten_dims = config.whiten_dims;
  if (config.whiten_dims > 0) {
    report.whiten_split = config.whiten_split;
    report.whiten_fit = config.whiten_fit;
  }

  const auto order = modality_order(p);
  report.warnings = degenerate_warnings(p, order);
  report.warnings.insert(report.warnings.end(), whitening_warnings.begin(),
                         whitening_warnings.end());
  for (const auto& m : order) {
    const auto& rows = p.by_modality.at(m);
    report.per_modality.push_back({m, m, rank_all(ranked_mod, rows, rows, config, m)});
    const auto& trained = set.attrs.train_modalities;
    if (!trained.empty() && std::find(trained.begin(), trained.end(), m) == trained.end())
      report.unseen.push_back(m);
  }
  if (config.cross_modal) {
    std::map<std::string, std::set<int>> vocab;
    for (const auto& m : order)
      for (int64_t r : p.by_modality.at(m)) vocab[m].insert(p.labels[r].begin(), p.labels[r].end());
    for (const auto& a : order) {
      for (const auto& b : order) {
        if (a == b) continue;
        const auto& va = vocab[a];
        const auto& vb = vocab[b];
        bool overlap = std::any_of(va.begin(), va.end(), [&](int l) { return vb.count(l) > 0; });
        if (!overlap) continue;
        report.cross_modal.push_back({a, b,
                                      rank_all(ranked_cross, p.by_modality.at(a),
                                               p.by_modality.at(b), config, a + "->" + b)});
      }
    }
  }
  return report;
}

std::vector<int64_t> top_k(const float* query, const float* gallery, int64_t n, int64_t D,
                           int64_t k, const std::vector<char>& excluded) {
  M3RET_CHECK(excluded.empty() || static_cast<int64_t>(excluded.size()) == n,
              "excluded has {} entries for a gallery of {}", excluded.size(), n);
  std::vector<Ranked> cand;
  cand.reserve(static_cast<size_t>(n));
  for (int64_t g = 0; g < n; ++g)
    if (excluded.empty() || !excluded[g])
      cand.push_back({dot(query, gallery + g * D, D), g, false});
  const int64_t L = std::min<int64_t>(k, static_cast<int64_t>(cand.size()));
  std::partial_sort(cand.begin(), cand.begin() + L, cand.end());
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(L));
  for (int64_t i = 0; i < L; ++i) out.push_back(cand[i].pos);
  return out;
}

}  // namespace m3ret::eval
