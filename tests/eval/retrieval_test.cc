// Retrieval metrics: hand-built cases with known answers, a brute-force
// reference, and an independent numpy implementation (recall_reference.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "eval/retrieval.h"
#include "eval_test_util.h"
#include "test_util.h"

namespace m3ret::eval {
namespace {

using testing::add;

EvalConfig config_with(std::vector<int64_t> ks, std::string split = "test") {
  EvalConfig c;
  c.ks = std::move(ks);
  c.split = std::move(split);
  return c;
}

// --------------------------------------------------------------- known answers

TEST(Retrieval, SameGroupCandidatesAreExcluded) {
  EmbeddingSet s;
  s.D = 2;
  add(s, "xray", "G", {"A"}, {1, 0});        // 0
  add(s, "xray", "G", {"A"}, {1, 0});        // 1: same patient as 0, identical image
  add(s, "xray", "H", {"B"}, {0.8f, 0.6f});  // 2
  add(s, "xray", "K", {"A"}, {0.6f, 0.8f});  // 3
  Report r = evaluate(s, config_with({1, 2}));
  ASSERT_EQ(r.per_modality.size(), 1u);
  const Metrics& m = r.per_modality[0].metrics;
  // 0 and 1: their twin is excluded, so B (0.8) ranks above A (0.6).
  // 2: the only B, no relevant candidate. 3: B (0.96) first, then A.
  EXPECT_EQ(m.queries, 3);
  EXPECT_EQ(m.skipped_no_relevant, 1);
  EXPECT_EQ(m.skipped_no_label, 0);
  EXPECT_EQ(m.gallery, 4);
  EXPECT_DOUBLE_EQ(m.recall.at(1), 0.0);
  EXPECT_DOUBLE_EQ(m.recall.at(2), 1.0);
  EXPECT_DOUBLE_EQ(m.precision.at(1), 0.0);
  EXPECT_DOUBLE_EQ(m.precision.at(2), 0.5);
  // map@2: queries 0 and 1 have R = 1 and their hit at rank 2 (AP@2 = (1/2) / min(1, 2));
  // query 3 has R = 2 and one hit at rank 2 (AP@2 = (1/2) / min(2, 2)).
  EXPECT_EQ(m.map_k, 2);
  EXPECT_DOUBLE_EQ(m.map_at_k, (0.5 + 0.5 + 0.25) / 3);

  // Without groups, 0 and 1 find each other first.
  s.groups = {"", "", "", ""};
  Report r2 = evaluate(s, config_with({1, 2}));
  EXPECT_DOUBLE_EQ(r2.per_modality[0].metrics.recall.at(1), 2.0 / 3);
}

TEST(Retrieval, MultiLabelSharedOrExact) {
  EmbeddingSet s;
  s.D = 2;
  add(s, "ct", "p1", {"A", "B"}, {1, 0});
  add(s, "ct", "p2", {"B", "C"}, {0.9f, 0.1f});  // nearest to 0, shares B
  add(s, "ct", "p3", {"B", "A"}, {0, 1});        // same set as 0, far away
  EvalConfig c = config_with({1});
  Report shared = evaluate(s, c);
  // 0: top-1 is 1 (shares B) -> hit. 1: top-1 is 0 (shares B) -> hit.
  // 2: top-1 is 1 (cos 0.11 > 0) shares B -> hit.
  EXPECT_EQ(shared.per_modality[0].metrics.queries, 3);
  EXPECT_DOUBLE_EQ(shared.per_modality[0].metrics.recall.at(1), 1.0);

  c.relevance = "same-labels";
  Report exact = evaluate(s, c);
  // 0: relevant only 2 (rank 2) -> miss. 1: no candidate with {B, C} -> skipped.
  // 2: relevant only 0; 0 is at cos 0, 1 at cos 0.11 -> miss.
  const Metrics& m = exact.per_modality[0].metrics;
  EXPECT_EQ(m.queries, 2);
  EXPECT_EQ(m.skipped_no_relevant, 1);
  EXPECT_DOUBLE_EQ(m.recall.at(1), 0.0);
  EXPECT_DOUBLE_EQ(m.map_at_k, 0.0);
}

// Per label, a candidate counts when it carries the label: the query {A, B}
// hits A at rank 1 but B only at rank 2, while the row counts it a hit at 1.
TEST(Retrieval, PerLabelRecallCountsCandidatesThatCarryTheLabel) {
  EmbeddingSet s;
  s.D = 2;
  add(s, "xray", "p1", {"A"}, {1, 0});             // 0: ranks 1, 3, 2
  add(s, "xray", "p2", {"A", "B"}, {0.9f, 0.1f});  // 1: ranks 0, 3, 2
  add(s, "xray", "p3", {"B"}, {0, 1});             // 2: ranks 3, 1, 0
  add(s, "xray", "p4", {"B"}, {0.1f, 0.9f});       // 3: ranks 2, 1, 0
  EvalConfig c = config_with({1, 2});
  c.bootstrap = 200;
  const Metrics m = evaluate(s, c).per_modality.at(0).metrics;
  EXPECT_DOUBLE_EQ(m.recall.at(1), 1.0);  // every top-1 shares a label with its query
  ASSERT_EQ(m.per_label.size(), 2u);
  // A: queries 0 and 1, each with one A among 3 candidates, found at rank 1.
  const LabelMetrics& a = m.per_label.at("A");
  EXPECT_EQ(a.queries, 2);
  EXPECT_DOUBLE_EQ(a.recall.at(1), 1.0);
  EXPECT_DOUBLE_EQ(a.chance_recall.at(1), 1.0 / 3);
  EXPECT_DOUBLE_EQ(a.chance_recall.at(2), 2.0 / 3);  // 1 - C(2,2)/C(3,2)
  EXPECT_EQ(a.ci_recall.at(1), (Interval{1.0, 1.0}));
  // B: queries 1, 2, 3, each with two B among 3 candidates; query 1 misses at rank 1.
  const LabelMetrics& b = m.per_label.at("B");
  EXPECT_EQ(b.queries, 3);
  EXPECT_DOUBLE_EQ(b.recall.at(1), 2.0 / 3);
  EXPECT_DOUBLE_EQ(b.recall.at(2), 1.0);
  EXPECT_DOUBLE_EQ(b.chance_recall.at(1), 2.0 / 3);
  EXPECT_DOUBLE_EQ(b.chance_recall.at(2), 1.0);
  EXPECT_LE(b.ci_recall.at(1).lo, 2.0 / 3);
  EXPECT_GE(b.ci_recall.at(1).hi, 2.0 / 3);
  EXPECT_LT(b.ci_recall.at(1).lo, b.ci_recall.at(1).hi);
  EXPECT_EQ(evaluate(s, c).per_modality.at(0).metrics.per_label.at("B").ci_recall.at(1),
            b.ci_recall.at(1));  // deterministic for a seed

  // Same-labels: the row's relevance grouped by label. 0 ({A}) and 1 ({A, B}) have
  // no candidate with their exact set; 2 and 3 ({B}) find each other first.
  c.relevance = "same-labels";
  c.bootstrap = 0;
  const Metrics e = evaluate(s, c).per_modality.at(0).metrics;
  ASSERT_EQ(e.per_label.size(), 1u);
  EXPECT_EQ(e.per_label.at("B").queries, 2);
  EXPECT_DOUBLE_EQ(e.per_label.at("B").recall.at(1), 1.0);
  EXPECT_DOUBLE_EQ(e.per_label.at("B").chance_recall.at(1), 1.0 / 3);
  EXPECT_TRUE(e.per_label.at("B").ci_recall.empty());  // no bootstrap, no interval
}

// Single-label data: the labels' figures, weighted by their queries, give the row's.
TEST(Retrieval, PerLabelFiguresAverageToTheRowOnSingleLabelData) {
  auto s = testing::random_set(300, 8, {"xray", "ct"}, 40, 4, 13);
  for (auto& l : s.labels)
    if (l.size() > 1) l.resize(1);
  const Report r = evaluate(s, config_with({1, 5}));
  for (const auto* rows : {&r.per_modality, &r.cross_modal}) {
    for (const auto& row : *rows) {
      SCOPED_TRACE(row.name());
      const Metrics& m = row.metrics;
      ASSERT_FALSE(m.per_label.empty());
      for (int64_t k : r.ks) {
        double rec = 0, chance = 0;
        int64_t n = 0;
        for (const auto& [l, lm] : m.per_label) {
          rec += lm.recall.at(k) * lm.queries;
          chance += lm.chance_recall.at(k) * lm.queries;
          n += lm.queries;
        }
        EXPECT_EQ(n, m.queries);
        EXPECT_NEAR(rec / n, m.recall.at(k), 1e-12);
        EXPECT_NEAR(chance / n, m.chance_recall.at(k), 1e-12);
      }
    }
  }
}

TEST(Retrieval, TiesGoToTheLowerIndex) {
  // Samples 1 and 2 are identical; one is labelled A (relevant to 0), the other Z.
  for (bool relevant_first : {true, false}) {
    SCOPED_TRACE(relevant_first ? "A before Z" : "Z before A");
    EmbeddingSet s;
    s.D = 2;
    add(s, "us", "", {"A"}, {1, 0});
    add(s, "us", "", {relevant_first ? "A" : "Z"}, {0.5f, 0.5f});
    add(s, "us", "", {relevant_first ? "Z" : "A"}, {0.5f, 0.5f});
    EvalConfig c = config_with({1, 2});
    Report r = evaluate(s, c);
    const Metrics& m = r.per_modality[0].metrics;
    // Query 0: 1 and 2 tie; a hit at 1 iff the relevant one has the lower index.
    // Query of the A twin: its identical Z twin ranks first -> miss at 1, hit at 2.
    // Query of the Z twin: no other Z -> skipped.
    EXPECT_EQ(m.queries, 2);
    EXPECT_EQ(m.skipped_no_relevant, 1);
    EXPECT_DOUBLE_EQ(m.recall.at(1), relevant_first ? 0.5 : 0.0);
    EXPECT_DOUBLE_EQ(m.recall.at(2), 1.0);
    EXPECT_EQ(top_k(s.row(0), s.row(1), 2, 2, 1), (std::vector<int64_t>{0}));
  }
}

// One query of modality "q" against a gallery "g" of 14 samples ranked by
// angle; `relevant` lists the 1-based ranks whose sample has the query's label.
Metrics one_query(const std::vector<int>& relevant) {
  EmbeddingSet s;
  s.D = 2;
  add(s, "q", "", {"A"}, {1, 0});
  for (int rank = 1; rank <= 14; ++rank) {
    const float angle = 0.05f * rank;
    bool rel = std::find(relevant.begin(), relevant.end(), rank) != relevant.end();
    add(s, "g", "", {rel ? "A" : "B"}, {std::cos(angle), std::sin(angle)});
  }
  Report r = evaluate(s, config_with({1, 5, 10}));
  EXPECT_NE(r.find("q->g"), nullptr);
  return r.find("q->g")->metrics;
}

TEST(Retrieval, MapAt10IsNormalisedByMinOfRelevantAndTen) {
  // Relevant at ranks 1, 3 and 12: AP@10 = (1/1 + 2/3) / min(3, 10).
  Metrics m = one_query({1, 3, 12});
  EXPECT_EQ(m.queries, 1);
  EXPECT_EQ(m.map_k, 10);
  EXPECT_DOUBLE_EQ(m.map_at_k, (1.0 + 2.0 / 3) / 3);
  EXPECT_DOUBLE_EQ(m.recall.at(1), 1.0);
  EXPECT_DOUBLE_EQ(m.precision.at(5), 2.0 / 5);
  EXPECT_DOUBLE_EQ(m.precision.at(10), 2.0 / 10);
  // Twelve relevant, the top ten all relevant: AP@10 = 10 / min(12, 10) = 1.
  EXPECT_DOUBLE_EQ(one_query({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14}).map_at_k, 1.0);
  // First hit at rank 6: recall@5 = 0, recall@10 = 1, AP@10 = (1/6) / 1.
  m = one_query({6});
  EXPECT_DOUBLE_EQ(m.recall.at(5), 0.0);
  EXPECT_DOUBLE_EQ(m.recall.at(10), 1.0);
  EXPECT_DOUBLE_EQ(m.map_at_k, 1.0 / 6);
  // Only relevant sample beyond rank 10: everything 0, but the query counts.
  m = one_query({11});
  EXPECT_EQ(m.queries, 1);
  EXPECT_DOUBLE_EQ(m.recall.at(10), 0.0);
  EXPECT_DOUBLE_EQ(m.map_at_k, 0.0);
}

TEST(Retrieval, TopKIsDeterministicAndHonoursExclusion) {
  std::vector<float> gallery = {1, 0, 1, 0, 0, 1, 1, 0};  // rows 0, 1, 3 equal
  float q[2] = {1, 0};
  EXPECT_EQ(top_k(q, gallery.data(), 4, 2, 3), (std::vector<int64_t>{0, 1, 3}));
  EXPECT_EQ(top_k(q, gallery.data(), 4, 2, 10), (std::vector<int64_t>{0, 1, 3, 2}));
  EXPECT_EQ(top_k(q, gallery.data(), 4, 2, 2, {1, 0, 0, 0}), (std::vector<int64_t>{1, 3}));
}

TEST(Retrieval, SkippedQueriesAndSingletonModality) {
  EmbeddingSet s;
  s.D = 3;
  add(s, "xray", "a", {}, {1, 0, 0});  // no label
  add(s, "xray", "b", {"A"}, {1, 0.1f, 0});
  add(s, "xray", "c", {"A"}, {0, 1, 0});
  add(s, "mri", "d", {"A"}, {0, 0, 1});  // alone in its modality
  EvalConfig c = config_with({1});
  c.cross_modal = false;
  Report r = evaluate(s, c);
  ASSERT_EQ(r.per_modality.size(), 2u);
  EXPECT_EQ(r.per_modality[0].name(), "xray");
  EXPECT_EQ(r.per_modality[1].name(), "mri");
  const Metrics& x = r.per_modality[0].metrics;
  EXPECT_EQ(x.skipped_no_label, 1);
  EXPECT_EQ(x.queries, 2);
  // b: top-1 is the unlabelled a (cos ~1) -> miss; c: top-1 is b (0.1) -> hit.
  EXPECT_DOUBLE_EQ(x.recall.at(1), 0.5);
  const Metrics& mri = r.per_modality[1].metrics;
  EXPECT_EQ(mri.queries, 0);
  EXPECT_EQ(mri.skipped_no_relevant, 1);
  EXPECT_DOUBLE_EQ(mri.recall.at(1), 0.0);
  EXPECT_TRUE(r.cross_modal.empty());
}

TEST(Retrieval, CrossModalPairsShareLabelsAndExcludeTheSamePatient) {
  EmbeddingSet s;
  s.D = 2;
  add(s, "ct", "p1", {"liver"}, {1, 0});
  add(s, "ct", "p2", {"lung"}, {0, 1});
  add(s, "mri", "p1", {"liver"}, {1, 0});  // same patient as ct 0
  add(s, "mri", "p3", {"liver"}, {0.6f, 0.8f});
  add(s, "mri", "p4", {"lung"}, {0.8f, 0.6f});
  add(s, "xray", "p5", {"fracture"}, {1, 0});  // no label shared with anyone
  Report r = evaluate(s, config_with({1}));
  std::vector<std::string> names;
  for (const auto& row : r.cross_modal) names.push_back(row.name());
  EXPECT_EQ(names, (std::vector<std::string>{"ct->mri", "mri->ct"}));
  const ReportRow* ct_mri = r.find("ct->mri");
  ASSERT_NE(ct_mri, nullptr);
  // ct 0 (liver, p1): mri p1 excluded; lung p4 (0.8) beats liver p3 (0.6) -> miss.
  // ct 1 (lung): p3 (0.8, liver) beats p4 (0.6, lung) -> miss.
  EXPECT_EQ(ct_mri->metrics.queries, 2);
  EXPECT_EQ(ct_mri->metrics.gallery, 3);
  EXPECT_DOUBLE_EQ(ct_mri->metrics.recall.at(1), 0.0);
  const ReportRow* mri_ct = r.find("mri->ct");
  // mri p1 liver: ct p1 excluded -> no relevant (skipped). p3 liver: nearest ct is p2 lung
  // (0.8) -> miss. p4 lung: nearest ct 0 (0.8, liver) -> miss.
  EXPECT_EQ(mri_ct->metrics.queries, 2);
  EXPECT_EQ(mri_ct->metrics.skipped_no_relevant, 1);
  EXPECT_DOUBLE_EQ(mri_ct->metrics.recall.at(1), 0.0);

  EvalConfig off = config_with({1});
  off.cross_modal = false;
  EXPECT_TRUE(evaluate(s, off).cross_modal.empty());
}

TEST(Retrieval, SplitSelectsSamplesAndEmptySelectionIsAnError) {
  EmbeddingSet s;
  s.D = 2;
  add(s, "xray", "", {"A"}, {1, 0}, "test");
  add(s, "xray", "", {"A"}, {1, 0}, "train");
  add(s, "xray", "", {"A"}, {0, 1}, "test");
  Report r = evaluate(s, config_with({1}, "test"));
  EXPECT_EQ(r.samples, 2);
  EXPECT_EQ(r.per_modality[0].metrics.gallery, 2);
  EXPECT_EQ(evaluate(s, config_with({1}, "")).samples, 3);
  try {
    evaluate(s, config_with({1}, "val"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'val'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("test, train"), std::string::npos) << e.what();
  }
}

TEST(Retrieval, ConfigValidation) {
  EvalConfig c;
  c.ks = {5, 1};
  EXPECT_THROW(c.validate(), config::Error);
  c.ks = {};
  EXPECT_THROW(c.validate(), config::Error);
  c.ks = {1, 10};
  c.relevance = "fuzzy";
  EXPECT_THROW(c.validate(), config::Error);

  // Through the TOML binder, as `m3ret eval --set ...` does.
  Settings settings = config::load<Settings>(
      std::nullopt, {"eval.ks=[1, 3]", "eval.split=", "eval.cross_modal=false"});
  EXPECT_EQ(settings.eval.ks, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(settings.eval.split, "");
  EXPECT_FALSE(settings.eval.cross_modal);
  EXPECT_EQ(Settings{}.eval.ks, (std::vector<int64_t>{1, 5, 10}));
  EXPECT_EQ(Settings{}.eval.split, "test");
  EXPECT_THROW(config::load<Settings>(std::nullopt, {"eval.ks=[3, 1]"}), config::Error);
  EXPECT_THROW(config::load<Settings>(std::nullopt, {"eval.relevance=fuzzy"}), config::Error);
}

// ------------------------------------------------------- brute-force reference

// Straightforward re-implementation: full sort of all candidates by (cosine in
// double, index), then the metric definitions written out literally.
std::map<std::string, Metrics> brute_force(const EmbeddingSet& s, const EvalConfig& c) {
  std::vector<int64_t> sel;
  for (int64_t i = 0; i < s.N; ++i)
    if (c.split.empty() || s.splits[i] == c.split) sel.push_back(i);
  auto cosine = [&](int64_t a, int64_t b) {
    double d = 0, na = 0, nb = 0;
    for (int64_t j = 0; j < s.D; ++j) {
      d += double(s.row(a)[j]) * s.row(b)[j];
      na += double(s.row(a)[j]) * s.row(a)[j];
      nb += double(s.row(b)[j]) * s.row(b)[j];
    }
    return d / std::sqrt(na * nb);
  };
  auto relevant = [&](int64_t a, int64_t b) {
    std::set<std::string> la(s.labels[a].begin(), s.labels[a].end());
    std::set<std::string> lb(s.labels[b].begin(), s.labels[b].end());
    if (c.relevance == "same-labels") return la == lb;
    for (const auto& l : la)
      if (lb.count(l)) return true;
    return false;
  };
  auto same_group = [&](int64_t a, int64_t b) {
    return a == b || (!s.groups[a].empty() && s.groups[a] == s.groups[b]);
  };
  std::set<std::string> mods;
  for (int64_t i : sel) mods.insert(s.modality[i]);
  std::map<std::string, Metrics> out;
  for (const auto& qa : mods) {
    for (const auto& gb : mods) {
      std::string name = qa == gb ? qa : qa + "->" + gb;
      if (qa != gb) {
        if (!c.cross_modal) continue;
        std::set<std::string> va, vb;
        for (int64_t i : sel) {
          if (s.modality[i] == qa) va.insert(s.labels[i].begin(), s.labels[i].end());
          if (s.modality[i] == gb) vb.insert(s.labels[i].begin(), s.labels[i].end());
        }
        bool overlap = false;
        for (const auto& l : va) overlap |= vb.count(l) > 0;
        if (!overlap) continue;
      }
      Metrics m;
      double ap = 0;
      std::map<int64_t, double> rec, prec;
      for (int64_t q : sel) {
        if (s.modality[q] != qa) continue;
        if (s.labels[q].empty()) {
          ++m.skipped_no_label;
          continue;
        }
        std::vector<std::pair<double, int64_t>> ranked;
        for (int64_t g : sel)
          if (s.modality[g] == gb && !same_group(q, g)) ranked.push_back({-cosine(q, g), g});
        std::sort(ranked.begin(), ranked.end());
        int64_t R = 0;
        for (auto& [score, g] : ranked) R += relevant(q, g);
        if (R == 0) {
          ++m.skipped_no_relevant;
          continue;
        }
        ++m.queries;
        for (int64_t k : c.ks) {
          int64_t hits = 0;
          for (int64_t i = 0; i < k && i < int64_t(ranked.size()); ++i)
            hits += relevant(q, ranked[i].second);
          rec[k] += hits > 0;
          prec[k] += double(hits) / k;
        }
        // Per label of the query: "carries the label" (shared-label) or the row's relevance.
        for (const auto& l : std::set<std::string>(s.labels[q].begin(), s.labels[q].end())) {
          auto carries = [&](int64_t g) {
            if (c.relevance == "same-labels") return relevant(q, g);
            return std::count(s.labels[g].begin(), s.labels[g].end(), l) > 0;
          };
          int64_t R_l = 0;
          for (auto& [score, g] : ranked) R_l += carries(g);
          if (R_l == 0) continue;
          LabelMetrics& lm = m.per_label[l];
          ++lm.queries;
          for (int64_t k : c.ks) {
            bool hit = false;
            for (int64_t i = 0; i < k && i < int64_t(ranked.size()); ++i)
              hit = hit || carries(ranked[i].second);
            lm.recall[k] += hit;
          }
        }
        const int64_t K = c.ks.back();
        double sum = 0;
        int64_t hits = 0;
        for (int64_t i = 0; i < K && i < int64_t(ranked.size()); ++i)
          if (relevant(q, ranked[i].second)) sum += double(++hits) / (i + 1);
        ap += sum / std::min(R, K);
      }
      for (int64_t k : c.ks) {
        m.recall[k] = m.queries ? rec[k] / m.queries : 0;
        m.precision[k] = m.queries ? prec[k] / m.queries : 0;
      }
      m.map_at_k = m.queries ? ap / m.queries : 0;
      for (auto& [l, lm] : m.per_label)
        for (auto& [k, v] : lm.recall) v /= lm.queries;
      out[name] = m;
    }
  }
  return out;
}

void expect_same(const Report& r, const std::map<std::string, Metrics>& ref) {
  size_t rows = 0;
  for (const auto* list : {&r.per_modality, &r.cross_modal}) {
    for (const auto& row : *list) {
      ++rows;
      SCOPED_TRACE(row.name());
      ASSERT_TRUE(ref.count(row.name()));
      const Metrics& a = row.metrics;
      const Metrics& b = ref.at(row.name());
      EXPECT_EQ(a.queries, b.queries);
      EXPECT_EQ(a.skipped_no_label, b.skipped_no_label);
      EXPECT_EQ(a.skipped_no_relevant, b.skipped_no_relevant);
      for (int64_t k : r.ks) {
        EXPECT_NEAR(a.recall.at(k), b.recall.at(k), 1e-12) << "k=" << k;
        EXPECT_NEAR(a.precision.at(k), b.precision.at(k), 1e-12) << "k=" << k;
      }
      EXPECT_NEAR(a.map_at_k, b.map_at_k, 1e-12);
      ASSERT_EQ(a.per_label.size(), b.per_label.size());
      for (const auto& [l, lb] : b.per_label) {
        SCOPED_TRACE("label " + l);
        ASSERT_TRUE(a.per_label.count(l));
        const LabelMetrics& la = a.per_label.at(l);
        EXPECT_EQ(la.queries, lb.queries);
        for (int64_t k : r.ks) EXPECT_NEAR(la.recall.at(k), lb.recall.at(k), 1e-12) << "k=" << k;
      }
    }
  }
  EXPECT_EQ(rows, ref.size());
}

TEST(Retrieval, MatchesBruteForceOnRandomData) {
  auto s = testing::random_set(300, 12, {"xray", "ct", "mri", "endoscopy"}, 40, 5, 7);
  for (const std::string relevance : {"shared-label", "same-labels"}) {
    for (const std::string split : {"test", ""}) {
      SCOPED_TRACE(relevance + " split=" + split);
      EvalConfig c = config_with({1, 3, 5, 10, 200}, split);
      c.relevance = relevance;
      Report r = evaluate(s, c);
      EXPECT_FALSE(r.cross_modal.empty());
      expect_same(r, brute_force(s, c));
    }
  }
}

TEST(Retrieval, ScalesToThousandsOfSamples) {
  // O(N^2 D) with bounded memory: 4000 x 64 in one modality runs in well under a second.
  auto s = testing::random_set(4000, 64, {"xray"}, 500, 8, 11);
  Report r = evaluate(s, config_with({1, 5, 10}, ""));
  EXPECT_GT(r.per_modality[0].metrics.queries, 2500);
}

// ------------------------------------------------ independent numpy reference

// Runs recall_reference.py on `file` with `args` and expects every row of `r` to match it.
void expect_matches_numpy(const std::string& py, const std::filesystem::path& file,
                          const std::string& args, const Report& r) {
  std::string out;
  const std::string cmd =
      py + " " + (m3ret::testing::source_dir() / "tests/eval/recall_reference.py").string() + " " +
      file.string() + " " + args;
  ASSERT_EQ(m3ret::testing::run_command(cmd, &out), 0) << out;
  auto j = nlohmann::json::parse(out);
  size_t rows = 0;
  for (const auto* list : {&r.per_modality, &r.cross_modal}) {
    for (const auto& row : *list) {
      ++rows;
      SCOPED_TRACE(args + " " + row.name());
      const auto& ref =
          j.at(row.gallery_modality == row.query_modality ? "per_modality" : "cross_modal")
              .at(row.name());
      EXPECT_EQ(row.metrics.queries, ref.at("queries").get<int64_t>());
      EXPECT_EQ(row.metrics.skipped_no_label, ref.at("skipped_no_label").get<int64_t>());
      EXPECT_EQ(row.metrics.skipped_no_relevant, ref.at("skipped_no_relevant").get<int64_t>());
      for (int64_t k : {1, 5, 10}) {
        EXPECT_NEAR(row.metrics.recall.at(k), ref.at("recall@" + std::to_string(k)).get<double>(),
                    1e-9);
        EXPECT_NEAR(row.metrics.precision.at(k),
                    ref.at("precision@" + std::to_string(k)).get<double>(), 1e-9);
      }
      EXPECT_NEAR(row.metrics.map_at_k, ref.at("map@10").get<double>(), 1e-9);
    }
  }
  EXPECT_EQ(rows, j.at("per_modality").size() + j.at("cross_modal").size());
}

TEST(Retrieval, MatchesNumpyReferenceThroughTheFile) {
  const std::string py = m3ret::testing::python_with("numpy, h5py");
  if (py.empty()) GTEST_SKIP() << "python3 with numpy and h5py not found";
  m3ret::testing::TempDir dir("eval-numpy");
  auto s = testing::random_set(240, 16, {"xray", "ultrasound", "ct", "mri"}, 30, 4, 3);
  write_embeddings(dir / "emb.h5", s);
  for (const std::string relevance : {"shared-label", "same-labels"}) {
    EvalConfig c = config_with({1, 5, 10}, "test");
    c.relevance = relevance;
    expect_matches_numpy(py, dir / "emb.h5", "--ks 1,5,10 --split test --relevance " + relevance,
                         evaluate(s, c));
  }
}

// The whitening readout against the reference's numpy SVD, per modality and pooled; MRI has no
// train row, so per modality it uses the pooled fit.
TEST(Retrieval, WhiteningMatchesNumpyReferenceThroughTheFile) {
  const std::string py = m3ret::testing::python_with("numpy, h5py");
  if (py.empty()) GTEST_SKIP() << "python3 with numpy and h5py not found";
  m3ret::testing::TempDir dir("eval-numpy-white");
  auto s = testing::random_set(480, 16, {"xray", "ct", "mri"}, 40, 4, 5);
  for (int64_t i = 0; i < s.N; ++i)
    if (s.modality[i] == "mri") s.splits[i] = "test";
  write_embeddings(dir / "emb.h5", s);
  for (const std::string fit : {"modality", "all"}) {
    for (int64_t d : {3, 8}) {
      EvalConfig c = config_with({1, 5, 10}, "test");
      c.whiten_dims = d;
      c.whiten_fit = fit;
      const Report r = evaluate(s, c);
      EXPECT_EQ(r.whitening.at("mri").fitted_on, "all");
      EXPECT_EQ(r.whitening.at("xray").fitted_on, fit == "modality" ? "xray" : "all");
      expect_matches_numpy(py, dir / "emb.h5",
                           fmt::format("--ks 1,5,10 --split test --whiten-dims {} "
                                       "--whiten-split train --whiten-fit {}",
                                       d, fit),
                           r);
    }
  }
}

}  // namespace
}  // namespace m3ret::eval
