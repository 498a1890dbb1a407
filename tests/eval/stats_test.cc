// Chance levels, bootstrap intervals, the label map, verdicts and seed summaries.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <random>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "eval/label_map.h"
#include "eval/report.h"
#include "eval/stats.h"
#include "eval_test_util.h"
#include "test_util.h"

namespace m3ret::eval {
namespace {

using testing::add;
using testing::error_of;

// ------------------------------------------------------------------ chance

// Expected recall@k and precision@k over all n! rankings of n candidates, R relevant.
std::pair<double, double> brute_force_chance(int64_t n, int64_t R, int64_t k) {
  std::vector<int> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);  // candidate i is relevant when i < R
  double recall = 0, precision = 0, count = 0;
  do {
    int64_t hits = 0;
    for (int64_t i = 0; i < std::min(n, k); ++i) hits += order[i] < R;
    recall += hits > 0;
    precision += static_cast<double>(hits) / static_cast<double>(k);
    count += 1;
  } while (std::next_permutation(order.begin(), order.end()));
  return {recall / count, precision / count};
}

TEST(Chance, MatchesTheAverageOverAllRankings) {
  for (int64_t n = 1; n <= 7; ++n)
    for (int64_t R = 0; R <= n; ++R)
      for (int64_t k = 1; k <= n + 2; ++k) {
        SCOPED_TRACE("n=" + std::to_string(n) + " R=" + std::to_string(R) +
                     " k=" + std::to_string(k));
        const auto [r, p] = brute_force_chance(n, R, k);
        EXPECT_NEAR(chance_recall_at(n, R, k), r, 1e-12);
        EXPECT_NEAR(chance_precision_at(n, R, k), p, 1e-12);
      }
  // Large n stays finite and sensible (product form, no binomials).
  EXPECT_NEAR(chance_recall_at(100000, 1, 10), 10.0 / 100000, 1e-12);
  EXPECT_NEAR(chance_recall_at(100000, 50000, 10), 1 - std::pow(0.5, 10), 1e-4);
  EXPECT_DOUBLE_EQ(chance_recall_at(5, 5, 1), 1.0);
}

// Five xray samples, two patients of label A (one with two images), B twice, one
// without label: n and R per query after group exclusion are known by hand.
EmbeddingSet chance_set() {
  EmbeddingSet s;
  s.D = 3;
  add(s, "xray", "p1", {"A"}, {1, 0, 0});
  add(s, "xray", "p1", {"A"}, {0, 1, 0});
  add(s, "xray", "p2", {"A"}, {0, 0, 1});
  add(s, "xray", "p3", {"B"}, {1, 1, 0});
  add(s, "xray", "p4", {"B"}, {0, 1, 1});
  add(s, "xray", "p5", {}, {1, 0, 1});
  return s;
}

TEST(Chance, EvaluateAveragesTheQueriesChance) {
  EvalConfig c;
  c.ks = {1, 2};
  c.bootstrap = 0;
  const Metrics m = evaluate(chance_set(), c).per_modality.at(0).metrics;
  ASSERT_EQ(m.queries, 5);
  // Queries 0, 1 (p1): n = 4, R = 1. Query 2 (p2): n = 5, R = 2. Queries 3, 4: n = 5, R = 1.
  const double r1 =
      (2 * chance_recall_at(4, 1, 1) + chance_recall_at(5, 2, 1) + 2 * chance_recall_at(5, 1, 1)) /
      5;
  const double r2 =
      (2 * chance_recall_at(4, 1, 2) + chance_recall_at(5, 2, 2) + 2 * chance_recall_at(5, 1, 2)) /
      5;
  EXPECT_NEAR(m.chance_recall.at(1), r1, 1e-12);
  EXPECT_NEAR(m.chance_recall.at(2), r2, 1e-12);
  EXPECT_NEAR(m.chance_recall.at(1), (2 * 0.25 + 0.4 + 2 * 0.2) / 5, 1e-12);
  EXPECT_NEAR(m.chance_precision.at(2), (2 * 0.25 + 0.4 + 2 * 0.2) / 5, 1e-12);
}

// Random embeddings rank the candidates uniformly at random: the mean recall
// over many draws approaches the chance level evaluate() reports.
TEST(Chance, RandomEmbeddingsScoreChanceOnAverage) {
  EmbeddingSet s = chance_set();
  EvalConfig c;
  c.ks = {1, 2, 3};
  c.bootstrap = 0;
  const Metrics expected = evaluate(s, c).per_modality.at(0).metrics;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::map<int64_t, double> recall, precision;
  const int draws = 4000;
  s.D = 8;
  s.X.resize(static_cast<size_t>(s.N * s.D));
  for (int d = 0; d < draws; ++d) {
    for (auto& x : s.X) x = normal(rng);
    const Metrics m = evaluate(s, c).per_modality.at(0).metrics;
    for (int64_t k : c.ks) {
      recall[k] += m.recall.at(k) / draws;
      precision[k] += m.precision.at(k) / draws;
    }
  }
  for (int64_t k : c.ks) {
    SCOPED_TRACE(k);
    EXPECT_NEAR(recall[k], expected.chance_recall.at(k), 0.02);
    EXPECT_NEAR(precision[k], expected.chance_precision.at(k), 0.02);
  }
}

// ---------------------------------------------------------------- bootstrap

TEST(Bootstrap, SameSeedSameIntervalOtherSeedOrRowDifferent) {
  const auto s = testing::random_set(300, 6, {"xray", "ct"}, 40, 3, 11);
  EvalConfig c;
  const Report a = evaluate(s, c), b = evaluate(s, c);
  c.bootstrap_seed = 1;
  const Report other = evaluate(s, c);
  const auto& x = a.find("xray")->metrics;
  ASSERT_EQ(x.ci_recall.size(), 3u);
  EXPECT_EQ(x.ci_recall, b.find("xray")->metrics.ci_recall);
  EXPECT_EQ(x.ci_precision, b.find("xray")->metrics.ci_precision);
  EXPECT_NE(x.ci_recall, other.find("xray")->metrics.ci_recall);
  EXPECT_NE(bootstrap_seed_for(0, "xray"), bootstrap_seed_for(0, "ct"));
  EXPECT_NE(bootstrap_seed_for(0, "xray"), bootstrap_seed_for(1, "xray"));
  EXPECT_EQ(bootstrap_seed_for(3, "ct->xray"), bootstrap_seed_for(3, "ct->xray"));
}

// The interval is a pure function of its inputs and seed, the same with every
// standard library (mt19937_64 is specified; indices by our own rejection).
TEST(Bootstrap, KnownAnswerForAFixedSeed) {
  std::vector<int64_t> patient;
  std::vector<double> hit;
  for (int i = 0; i < 30; ++i) {
    patient.push_back(i / 3);
    hit.push_back(i % 4 == 0 ? 1.0 : 0.0);
  }
  const auto ci = bootstrap_intervals(patient, {hit}, 200, 42);
  ASSERT_EQ(ci.size(), 1u);
  EXPECT_DOUBLE_EQ(ci[0].lo, 5.0 / 30);  // recorded once; a change means other draws
  EXPECT_DOUBLE_EQ(ci[0].hi, 10.0 / 30);
}

TEST(Bootstrap, IntervalContainsThePointEstimate) {
  const auto s = testing::random_set(400, 6, {"xray", "ct", "mri"}, 60, 3, 3);
  EvalConfig c;
  const Report r = evaluate(s, c);
  int rows = 0;
  for (const auto* list : {&r.per_modality, &r.cross_modal})
    for (const auto& row : *list) {
      if (row.metrics.queries == 0) continue;
      ++rows;
      for (int64_t k : c.ks) {
        SCOPED_TRACE(row.name() + " k=" + std::to_string(k));
        const Interval rc = row.metrics.ci_recall.at(k), pc = row.metrics.ci_precision.at(k);
        EXPECT_LE(rc.lo, row.metrics.recall.at(k));
        EXPECT_GE(rc.hi, row.metrics.recall.at(k));
        EXPECT_LE(rc.lo, rc.hi);
        EXPECT_LE(pc.lo, row.metrics.precision.at(k));
        EXPECT_GE(pc.hi, row.metrics.precision.at(k));
      }
    }
  EXPECT_GE(rows, 6);
}

TEST(Bootstrap, EveryQueryHittingGivesOneOne) {
  EmbeddingSet s;
  s.D = 2;
  for (int p = 0; p < 6; ++p) {
    add(s, "xray", "p" + std::to_string(p), {"A"}, {1, 0.01f * p});
    add(s, "xray", "q" + std::to_string(p), {"B"}, {0.01f * p, 1});
  }
  const Metrics m = evaluate(s, EvalConfig{}).per_modality.at(0).metrics;
  EXPECT_DOUBLE_EQ(m.recall.at(1), 1.0);
  EXPECT_EQ(m.ci_recall.at(1), (Interval{1.0, 1.0}));
  EXPECT_EQ(m.ci_precision.at(1), (Interval{1.0, 1.0}));
}

TEST(Bootstrap, NarrowsWithMorePatients) {
  auto width = [](int patients) {
    std::vector<int64_t> patient;
    std::vector<double> hit;
    for (int i = 0; i < patients * 2; ++i) {
      patient.push_back(i / 2);
      hit.push_back(i % 4 < 2 ? 1.0 : 0.0);  // half the patients hit
    }
    const Interval ci = bootstrap_intervals(patient, {hit}, 1000, 5)[0];
    return ci.hi - ci.lo;
  };
  const double w20 = width(20), w200 = width(200), w2000 = width(2000);
  EXPECT_GT(w20, 2 * w200);
  EXPECT_GT(w200, 2 * w2000);
  EXPECT_NEAR(w200, 2 * 1.96 * 0.5 / std::sqrt(200.0), 0.03);  // normal approximation
}

// Patients, not queries, are resampled: two patients of ten queries each, one
// always hitting, one never, give [0, 1] (a query-level bootstrap would be narrow).
TEST(Bootstrap, ResamplesPatientsNotQueries) {
  std::vector<int64_t> patient;
  std::vector<double> hit;
  for (int i = 0; i < 20; ++i) {
    patient.push_back(i < 10 ? 7 : 9);
    hit.push_back(i < 10 ? 1.0 : 0.0);
  }
  const Interval ci = bootstrap_intervals(patient, {hit}, 1000, 0)[0];
  EXPECT_DOUBLE_EQ(ci.lo, 0.0);
  EXPECT_DOUBLE_EQ(ci.hi, 1.0);
  // Twenty single-query patients: much narrower.
  std::iota(patient.begin(), patient.end(), 0);
  const Interval fine = bootstrap_intervals(patient, {hit}, 1000, 0)[0];
  EXPECT_GT(fine.lo, 0.2);
  EXPECT_LT(fine.hi, 0.8);
}

TEST(Bootstrap, ZeroResamplesMeansNoInterval) {
  const auto s = testing::random_set(100, 4, {"xray"}, 20, 2, 2);
  EvalConfig c;
  c.bootstrap = 0;
  const Report r = evaluate(s, c);
  EXPECT_TRUE(r.per_modality.at(0).metrics.ci_recall.empty());
  EXPECT_FALSE(
      to_json(r).at("encoders").at("encoder").at("per_modality").at("xray").contains("ci95"));
  EXPECT_EQ(to_json(r).at("bootstrap"), 0);
  c.bootstrap = -1;
  try {
    c.validate();
    ADD_FAILURE();
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("eval.bootstrap"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- label map

TEST(LabelMap, MapsScopedEntriesFirstAndKeepsUnmapped) {
  const LabelMap map = parse_label_map(
      "concept,label,modality,note\n"
      "pneumonia,Pneumonia,,any\n"
      "pneumonia,Lung Opacity,xray,\n"
      "\"effusion, pleural\",Effusion,,quoted\n"
      "opacity,Lung Opacity,,\n",
      "map.csv");
  EXPECT_EQ(map.apply("ct", "Pneumonia"), "pneumonia");
  EXPECT_EQ(map.apply("xray", "Lung Opacity"), "pneumonia");  // scoped entry wins
  EXPECT_EQ(map.apply("ct", "Lung Opacity"), "opacity");      // unscoped otherwise
  EXPECT_EQ(map.apply("xray", "Effusion"), "effusion, pleural");
  EXPECT_EQ(map.apply("xray", "Nodule"), "Nodule");  // unmapped stays
  // Without a modality column every entry applies to any modality.
  const LabelMap plain = parse_label_map("\xEF\xBB\xBFlabel,concept\nA,x\n", "plain.csv");
  EXPECT_EQ(plain.apply("mri", "A"), "x");
}

TEST(LabelMap, ExcludedLabelsAreDroppedAfterMapping) {
  EmbeddingSet s;
  s.D = 1;
  add(s, "xray", "", {"No Finding"}, {1});
  add(s, "xray", "", {"Pneumonia", "No Finding"}, {1});
  add(s, "ct", "", {"normal_ct", "Pneumonia"}, {1});
  const LabelMap map =
      parse_label_map("label,concept\nnormal_ct,normal\nNo Finding,normal\n", "m.csv");
  const auto labels = relevance_labels(s, map, {"normal"});
  EXPECT_EQ(labels[0], std::vector<std::string>{});
  EXPECT_EQ(labels[1], std::vector<std::string>{"Pneumonia"});
  EXPECT_EQ(labels[2], std::vector<std::string>{"Pneumonia"});
  EXPECT_EQ(relevance_labels(s, LabelMap{}, {"No Finding"})[2],
            (std::vector<std::string>{"Pneumonia", "normal_ct"}));
}

TEST(LabelMap, ErrorsNameTheFileAndLine) {
  EXPECT_NE(error_of([] {
              parse_label_map("label,target\nA,b\n", "m.csv");
            }).find("m.csv:1: no 'concept' column"),
            std::string::npos);
  EXPECT_NE(
      error_of([] { parse_label_map("concept\nb\n", "m.csv"); }).find("m.csv:1: no 'label' column"),
      std::string::npos);
  const std::string dup =
      error_of([] { parse_label_map("label,concept,modality\nA,x,ct\nA,y,\nA,z,ct\n", "m.csv"); });
  EXPECT_NE(dup.find("m.csv:4: label 'A' is mapped twice for modality ct"), std::string::npos)
      << dup;
  EXPECT_NE(error_of([] {
              parse_label_map("label,concept\nA,\n", "m.csv");
            }).find("m.csv:2: empty concept"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_label_map("", "m.csv"); }).find("m.csv"), std::string::npos);
  const std::string missing = error_of([] { read_label_map("/nonexistent/map.csv"); });
  EXPECT_NE(missing.find("eval.label_map"), std::string::npos) << missing;
  EXPECT_NE(missing.find("/nonexistent/map.csv"), std::string::npos) << missing;
}

// Through evaluate(): concepts make CT and X-ray labels comparable (a
// cross-modal row appears), and excluding "No Finding" stops those images from
// being relevant to each other.
TEST(LabelMap, EvaluateUsesConceptsAndExclusions) {
  m3ret::testing::TempDir dir("eval-labelmap");
  fs::write_atomic(dir / "map.csv", "label,concept,modality\npneumonia_ct,Pneumonia,ct\n");
  EmbeddingSet s;
  s.D = 2;
  add(s, "xray", "a", {"Pneumonia"}, {1, 0});
  add(s, "xray", "b", {"No Finding"}, {0.9f, 0.1f});
  add(s, "xray", "c", {"No Finding"}, {0.8f, 0.2f});
  add(s, "xray", "d", {"Pneumonia"}, {0, 1});
  add(s, "ct", "e", {"pneumonia_ct"}, {1, 0});
  add(s, "ct", "f", {"pneumonia_ct"}, {0, 1});
  EvalConfig c;
  c.ks = {1};
  c.bootstrap = 0;
  const Report plain = evaluate(s, c);
  EXPECT_EQ(plain.find("ct->xray"), nullptr);
  EXPECT_EQ(plain.find("xray")->metrics.queries, 4);  // b and c find each other

  c.label_map = (dir / "map.csv").string();
  c.exclude_labels = {"No Finding"};
  const Report mapped = evaluate(s, c);
  ASSERT_NE(mapped.find("ct->xray"), nullptr);
  EXPECT_EQ(mapped.find("ct->xray")->metrics.queries, 2);
  EXPECT_DOUBLE_EQ(mapped.find("ct->xray")->metrics.recall.at(1), 1.0);
  const Metrics& x = mapped.find("xray")->metrics;
  EXPECT_EQ(x.skipped_no_label, 2);  // b and c: no label left
  EXPECT_EQ(x.queries, 2);
  EXPECT_DOUBLE_EQ(x.recall.at(1), 0.0);  // a's nearest are b, c: no longer relevant
  const auto j = to_json(mapped);
  EXPECT_EQ(j.at("label_map"), c.label_map);
  EXPECT_EQ(j.at("exclude_labels"), nlohmann::ordered_json::array({"No Finding"}));
  EXPECT_EQ(report_from_json(j).exclude_labels, c.exclude_labels);

  c.label_map = (dir / "missing.csv").string();
  EXPECT_NE(error_of([&] { evaluate(s, c); }).find("missing.csv"), std::string::npos);
}

// ------------------------------------------------------------------ verdict

Metrics row_metrics(double r1, Interval ci, double chance, bool with_ci = true) {
  Metrics m;
  m.queries = 30;
  m.gallery = 40;
  m.recall = {{1, r1}, {5, std::min(1.0, r1 + 0.2)}};
  m.precision = {{1, r1}, {5, r1 / 2}};
  m.map_k = 5;
  m.map_at_k = r1 / 2;
  m.chance_recall = {{1, chance}, {5, std::min(1.0, chance * 4)}};
  m.chance_precision = {{1, chance}, {5, chance}};
  if (with_ci) {
    m.ci_recall = {{1, ci}, {5, {ci.lo + 0.1, std::min(1.0, ci.hi + 0.2)}}};
    m.ci_precision = m.ci_recall;
  }
  return m;
}

Report verdict_report(double xray, double ct_xray, bool with_ci = true) {
  Report r;
  r.ks = {1, 5};
  r.split = "test";
  r.relevance = "shared-label";
  r.samples = 70;
  r.unseen = {"ct"};
  r.per_modality.push_back(
      {"xray", "xray", row_metrics(xray, {xray - 0.08, xray + 0.08}, 0.17, with_ci)});
  r.per_modality.push_back({"ct", "ct", row_metrics(0, {0, 0}, 0, with_ci)});
  r.per_modality.back().metrics.queries = 0;  // no evaluated query: no verdict
  r.cross_modal.push_back(
      {"ct", "xray", row_metrics(ct_xray, {ct_xray - 0.14, ct_xray + 0.11}, 0.39, with_ci)});
  return r;
}

TEST(Verdict, SaysWhetherTheIntervalBeatsChanceAndEachOtherEncoder) {
  const std::vector<std::pair<std::string, Report>> columns = {
      {"trained", verdict_report(0.41, 0.55)},
      {"random-init", verdict_report(0.22, 0.20)},
      {"raw-pixels", verdict_report(0.18, 0.58)},
      {"histogram", verdict_report(0.17, 0.30)}};
  const auto lines = verdict_lines(columns, 1);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0],
            "xray R@1: trained 0.410 [0.330–0.490] beats chance 0.170, random-init 0.220, "
            "raw-pixels 0.180, histogram 0.170");
  EXPECT_EQ(lines[1],
            "ct (unseen)->xray R@1: trained 0.550 [0.410–0.660] does NOT beat raw-pixels 0.580 "
            "(beats chance 0.390, random-init 0.200, histogram 0.300)");
  const auto v = verdicts(columns, 1);
  EXPECT_TRUE(v[0].beats_all());
  EXPECT_FALSE(v[1].beats_all());

  const auto j = verdict_json(columns, 1);
  EXPECT_EQ(j.at("k"), 1);
  ASSERT_EQ(j.at("rows").size(), 2u);
  const auto& x = j.at("rows").at("xray");
  EXPECT_TRUE(x.at("beats_chance").get<bool>());
  EXPECT_EQ(x.at("beats"), nlohmann::ordered_json::parse(
                               R"({"random-init": true, "raw-pixels": true, "histogram": true})"));
  EXPECT_DOUBLE_EQ(x.at("ci95").at(0).get<double>(), 0.33);
  const auto& cx = j.at("rows").at("ct->xray");
  EXPECT_TRUE(cx.at("beats_chance").get<bool>());
  EXPECT_FALSE(cx.at("beats").at("raw-pixels").get<bool>());
  EXPECT_TRUE(cx.at("beats").at("random-init").get<bool>());
  // In the report document, at the first k unless told otherwise.
  EXPECT_EQ(to_json(columns).at("verdict"), j);
  EXPECT_EQ(to_json(columns, 5).at("verdict"), verdict_json(columns, 5));

  // Below chance too; at k = 5.
  const auto five = verdict_lines({{"trained", verdict_report(0.10, 0.55)}}, 5);
  EXPECT_EQ(five[0], "xray R@5: trained 0.300 [0.120–0.380] does NOT beat chance 0.680");
  EXPECT_NE(error_of([&] { verdict_lines(columns, 10); }).find("k = 10"), std::string::npos);
}

// Variants of the trained encoder ("trained-cls", "trained-student") are shown
// beside it but are not baselines: the verdict ignores them.
TEST(Verdict, VariantsOfTheFirstEncoderAreNotRivals) {
  const std::vector<std::pair<std::string, Report>> columns = {
      {"trained", verdict_report(0.41, 0.55)},
      {"random-init", verdict_report(0.22, 0.20)},
      {"trained-cls", verdict_report(0.60, 0.70)},
      {"trainedish", verdict_report(0.60, 0.70)}};
  const auto v = verdicts(columns, 1);
  ASSERT_EQ(v[0].rivals.size(), 2u);
  EXPECT_EQ(v[0].rivals[0].name, "random-init");
  EXPECT_EQ(v[0].rivals[1].name, "trainedish");
  EXPECT_FALSE(verdict_json(columns, 1).at("rows").at("xray").at("beats").contains("trained-cls"));
}

TEST(Verdict, WithoutAnIntervalNothingIsBeaten) {
  const std::vector<std::pair<std::string, Report>> columns = {
      {"trained", verdict_report(0.9, 0.9, false)}, {"random-init", verdict_report(0.1, 0.1)}};
  const auto lines = verdict_lines(columns, 1);
  EXPECT_EQ(lines[0],
            "xray R@1: trained 0.900 (no interval: eval.bootstrap = 0) does NOT beat chance 0.170, "
            "random-init 0.100");
  EXPECT_TRUE(verdict_json(columns, 1).at("rows").at("xray").at("ci95").is_null());
}

// ------------------------------------------------------------ shortcut probes

// A probe (random init, raw pixels, histograms) whose interval lies above
// chance retrieves the class without learning: the check names those rows.
TEST(ProbeCheck, NamesTheRowsWhereAProbeIsAboveChance) {
  // Intervals at k = 1 (verdict_report): raw pixels xray [0.22, 0.38] and ct->xray
  // [0.44, 0.69], above chance 0.17 and 0.39; random init xray [0.14, 0.30], which
  // holds 0.17; histogram xray [0.18, 0.34], above 0.17 by 0.01.
  Report pixels = verdict_report(0.30, 0.58);
  Report random = verdict_report(0.22, 0.20);
  Report histogram = verdict_report(0.26, 0.30);
  pixels.source.encoder = "raw-pixels";
  random.source.encoder = "random-init";
  random.source.random_init = true;
  histogram.source.encoder = "histogram";
  const std::vector<std::pair<std::string, Report>> columns = {
      {"trained", verdict_report(0.41, 0.55)},
      {"random-init", random},
      {"raw-pixels", pixels},
      {"histogram", histogram}};
  const auto lines = probe_lines(columns, 1);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0],
            "random-init R@1: no modality above chance; 0 of 1 cross-modal rows above chance");
  EXPECT_EQ(lines[1],
            "raw-pixels R@1: above chance in xray 0.300 [0.220–0.380] (chance 0.170); 1 of 1 "
            "cross-modal rows above chance");
  EXPECT_EQ(lines[2],
            "histogram R@1: above chance in xray 0.260 [0.180–0.340] (chance 0.170); 0 of 1 "
            "cross-modal rows above chance");

  // The same in the report's verdict object; ct has no evaluated query, so it is not checked.
  const auto j = verdict_json(columns, 1).at("probes");
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j.at("raw-pixels").at("checked"),
            nlohmann::ordered_json::parse(R"(["xray", "ct->xray"])"));
  EXPECT_EQ(j.at("raw-pixels").at("above_chance"),
            nlohmann::ordered_json::parse(R"(["xray", "ct->xray"])"));
  EXPECT_EQ(j.at("random-init").at("above_chance"), nlohmann::ordered_json::array());
  EXPECT_EQ(j.at("histogram").at("above_chance"), nlohmann::ordered_json::parse(R"(["xray"])"));

  // At k = 5 the intervals are [lo + 0.1, hi + 0.2] and chance is 4 x: raw pixels' xray
  // [0.32, 0.58] is under 0.68.
  EXPECT_EQ(probe_lines(columns, 5)[1],
            "raw-pixels R@5: no modality above chance; 0 of 1 cross-modal rows above chance");
  EXPECT_NE(error_of([&] { probe_lines(columns, 10); }).find("k = 10"), std::string::npos);
}

// What makes a column a probe is what its embeddings are, not its name; files
// that do not record it fall back on the names the demo gives.
TEST(ProbeCheck, ProbesAreKnownByTheirEmbeddings) {
  Report renamed = verdict_report(0.30, 0.58);
  renamed.source.encoder = "raw-pixels";
  Report model = verdict_report(0.30, 0.58);
  model.source.encoder = "checkpoint";
  Report old_file = verdict_report(0.30, 0.58);  // encoder "" (unknown)
  Report untrained = verdict_report(0.30, 0.58);
  untrained.source.random_init = true;
  const std::vector<std::pair<std::string, Report>> columns = {
      {"trained", verdict_report(0.41, 0.55)},
      {"pixels-16", renamed},
      {"raw-pixels", model},
      {"histogram", old_file},
      {"another-run", old_file},
      {"init", untrained}};
  const auto checks = probe_checks(columns, 1);
  ASSERT_EQ(checks.size(), 3u);
  EXPECT_EQ(checks[0].probe, "pixels-16");
  EXPECT_EQ(checks[1].probe, "histogram");
  EXPECT_EQ(checks[2].probe, "init");
  EXPECT_EQ(checks[0].above, (std::vector<std::string>{"xray", "ct->xray"}));
  // The judged encoder itself is never a probe, and without probes there is no line.
  EXPECT_TRUE(probe_lines({{"raw-pixels", renamed}}, 1).empty());
  EXPECT_TRUE(verdict_json({{"trained", model}}, 1).at("probes").empty());
}

TEST(ProbeCheck, WithoutIntervalsNothingIsChecked) {
  const std::vector<std::pair<std::string, Report>> columns = {
      {"trained", verdict_report(0.9, 0.9, false)}, {"histogram", verdict_report(0.5, 0.9, false)}};
  EXPECT_EQ(
      probe_lines(columns, 1),
      (std::vector<std::string>{"histogram R@1: no interval (eval.bootstrap = 0): not checked"}));
  EXPECT_EQ(verdict_json(columns, 1).at("probes").at("histogram").at("checked"),
            nlohmann::ordered_json::array());
}

// The Markdown report ends with the probe check under its own heading.
TEST(ProbeCheck, TheMarkdownReportHasItAfterTheVerdict) {
  m3ret::testing::TempDir dir("probe-report");
  Report pixels = verdict_report(0.30, 0.58);
  pixels.source.encoder = "raw-pixels";
  write_reports(dir / "report.json",
                {{"trained", verdict_report(0.41, 0.55)}, {"raw-pixels", pixels}}, 1);
  const std::string md = fs::read_file(dir / "report.md");
  const auto heading = md.find("## " + probe_heading(1) + "\n\n");
  ASSERT_NE(heading, std::string::npos) << md;
  EXPECT_GT(heading, md.find("## Verdict"));
  EXPECT_NE(
      md.find("- raw-pixels R@1: above chance in xray 0.300 [0.220–0.380] (chance 0.170)", heading),
      std::string::npos)
      << md;
  const auto j = nlohmann::ordered_json::parse(fs::read_file(dir / "report.json"));
  EXPECT_EQ(j.at("verdict").at("probes").at("raw-pixels").at("above_chance").size(), 2u);
}

// -------------------------------------------------------------------- seeds

TEST(Seeds, SummaryHasMeanSdMinMaxAndValues) {
  std::vector<nlohmann::ordered_json> reports;
  for (double r : {0.2, 0.4, 0.6})
    reports.push_back(
        to_json({{"trained", verdict_report(r, r / 2)}, {"histogram", verdict_report(0.1, 0.1)}}));
  const auto s = seed_summary(reports);
  EXPECT_EQ(s.at("seeds"), 3);
  const auto& d = s.at("encoders").at("trained").at("per_modality").at("xray").at("recall@1");
  EXPECT_NEAR(d.at("mean").get<double>(), 0.4, 1e-12);
  EXPECT_NEAR(d.at("sd").get<double>(), 0.2, 1e-12);
  EXPECT_DOUBLE_EQ(d.at("min").get<double>(), 0.2);
  EXPECT_DOUBLE_EQ(d.at("max").get<double>(), 0.6);
  EXPECT_EQ(d.at("values").size(), 3u);
  const auto& c = s.at("encoders").at("trained").at("cross_modal").at("ct->xray");
  EXPECT_NEAR(c.at("recall@1").at("mean").get<double>(), 0.2, 1e-12);
  EXPECT_TRUE(c.contains("precision@5"));
  EXPECT_TRUE(c.contains("map@5"));
  EXPECT_DOUBLE_EQ(s.at("encoders")
                       .at("histogram")
                       .at("per_modality")
                       .at("xray")
                       .at("recall@1")
                       .at("sd")
                       .get<double>(),
                   0.0);
  EXPECT_EQ(s.at("encoders").begin().key(), "trained");

  const std::string md = seed_summary_markdown(s);
  EXPECT_NE(md.find("# Retrieval over 3 seeds (mean ± sd)"), std::string::npos) << md;
  EXPECT_NE(md.find("## recall@1\n\n| row | trained | histogram |"), std::string::npos) << md;
  EXPECT_NE(md.find("| xray | 0.400 ± 0.200 | 0.100 ± 0.000 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| ct->xray | 0.200 ± 0.100 |"), std::string::npos) << md;
  EXPECT_NE(md.find("## map@5"), std::string::npos) << md;

  const auto named = seed_summary(reports, {3, 5, 8});
  EXPECT_EQ(named.at("seed_values"), nlohmann::ordered_json::array({3, 5, 8}));
  EXPECT_NE(seed_summary_markdown(named).find("seeds: 3, 5, 8"), std::string::npos);
  EXPECT_NE(error_of([&] { seed_summary(reports, {1}); }).find("1 seeds for 3 reports"),
            std::string::npos);
  EXPECT_FALSE(s.contains("seed_values"));

  // One seed: sd 0.
  EXPECT_DOUBLE_EQ(seed_summary({reports[0]})
                       .at("encoders")
                       .at("trained")
                       .at("per_modality")
                       .at("xray")
                       .at("recall@1")
                       .at("sd")
                       .get<double>(),
                   0.0);
}

// Per row and k, in how many seeds the first encoder's interval beat chance and
// every other encoder; and recall per label over the seeds, a label missing in
// some seed counted as absent there, never as 0.
TEST(Seeds, SummaryCountsVerdictsAndBreaksRecallDownPerLabel) {
  auto label = [](double r1, double chance) {
    LabelMetrics lm;
    lm.queries = 10;
    lm.recall = {{1, r1}, {5, r1 + 0.1}};
    lm.chance_recall = {{1, chance}, {5, 0.5}};
    return lm;
  };
  std::vector<nlohmann::ordered_json> reports;
  for (double r : {0.2, 0.4, 0.6}) {
    Report trained = verdict_report(r, r / 2);
    auto& per_label = trained.per_modality.front().metrics.per_label;
    if (r < 0.5) {
      per_label["a"] = label(r + 0.1, 0.15);
      per_label["b"] = label(r - 0.1, 0.25);
    } else {
      per_label["c"] = label(0.5, 0.2);
    }
    // xray: chance 0.17, trained's interval [r - 0.08, r + 0.08], the histogram at 0.35:
    // r = 0.2 beats nothing, 0.4 beats chance only, 0.6 both.
    reports.push_back(to_json({{"trained", trained}, {"histogram", verdict_report(0.35, 0.1)}}));
  }
  const auto s = seed_summary(reports);
  const auto& v = s.at("verdicts");
  EXPECT_EQ(v.at("encoder"), "trained");
  const auto& xray = v.at("recall@1").at("xray");
  EXPECT_EQ(xray.at("evaluated"), 3);
  EXPECT_EQ(xray.at("beats_chance"), 2);
  EXPECT_EQ(xray.at("beats_all"), 1);
  EXPECT_EQ(v.at("recall@1").at("ct").at("evaluated"), 0);  // no query in any seed
  EXPECT_EQ(v.at("recall@1").at("ct->xray").at("beats_chance"), 0);
  EXPECT_EQ(v.at("recall@5").at("xray").at("beats_chance"), 0);  // chance@5 0.68 > lower bound

  const auto& pl = s.at("encoders").at("trained").at("per_modality").at("xray").at("per_label");
  EXPECT_EQ(pl.size(), 3u);
  EXPECT_NEAR(pl.at("a").at("recall@1").at("mean").get<double>(), 0.4, 1e-12);
  EXPECT_NEAR(pl.at("b").at("recall@5").at("mean").get<double>(), 0.3, 1e-12);
  EXPECT_NEAR(pl.at("b").at("chance").at("recall@1").at("mean").get<double>(), 0.25, 1e-12);
  const auto& c = pl.at("c").at("recall@1");
  EXPECT_EQ(c.at("evaluated"), 1);
  EXPECT_EQ(c.at("values"), nlohmann::ordered_json::parse("[null, null, 0.5]"));
  EXPECT_FALSE(
      s.at("encoders").at("histogram").at("per_modality").at("xray").contains("per_label"));

  const std::string md = seed_summary_markdown(s);
  const auto verdict = md.find("## Verdict over seeds");
  ASSERT_NE(verdict, std::string::npos) << md;
  EXPECT_LT(verdict, md.find("## recall@1\n"));
  EXPECT_NE(md.find("| row | R@1 > chance | R@1 > all | R@5 > chance | R@5 > all |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| xray | 2 of 3 | 1 of 3 | 0 of 3 | 0 of 3 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| ct | — | — | — | — |"), std::string::npos) << md;
  const auto labels = md.find(
      "## recall@1 per label (mean ± sd over seeds)\n\n"
      "| modality / label | trained | histogram | chance |");
  ASSERT_NE(labels, std::string::npos) << md;
  EXPECT_NE(md.find("| xray / a | 0.400 ± 0.141 (2 of 3 seeds) | — (absent) | 0.150 |", labels),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| xray / c | 0.500 ± 0.000 (1 of 3 seeds) | — (absent) | 0.200 |", labels),
            std::string::npos)
      << md;
  // Reports without per-label figures have no per-label table.
  EXPECT_EQ(
      seed_summary_markdown(seed_summary({to_json(verdict_report(0.3, 0.2))})).find("per label"),
      std::string::npos);
}

// Per probe, k and row, in how many seeds the probe's interval lay above chance, of
// those where it had one; the encoder judged and columns that are no probe are not
// counted.
TEST(Seeds, SummaryCountsWhereEachProbeLiesAboveChance) {
  std::vector<nlohmann::ordered_json> reports;
  for (double pixels : {0.20, 0.30, 0.30}) {
    // xray: chance 0.17, each interval [r - 0.08, r + 0.08]; ct->xray: chance 0.39,
    // interval [r - 0.14, r + 0.11]. Raw pixels: xray above chance in seeds 2 and 3,
    // ct->xray (0.55) in all three; the histogram nowhere, and without an interval in
    // seed 1.
    Report raw = verdict_report(pixels, 0.55);
    raw.source.encoder = "raw-pixels";
    Report histogram = verdict_report(0.17, 0.30, /*with_ci=*/pixels > 0.25);
    histogram.source.encoder = "histogram";
    reports.push_back(to_json({{"trained", verdict_report(0.6, 0.6)},
                               {"other-run", verdict_report(0.6, 0.6)},
                               {"raw-pixels", raw},
                               {"histogram", histogram}}));
  }
  const auto s = seed_summary(reports);
  ASSERT_TRUE(s.contains("probe_checks")) << s.dump(2);
  const auto& at1 = s.at("probe_checks").at("recall@1");
  EXPECT_EQ(at1.size(), 2u) << at1.dump(2);  // neither trained nor other-run
  const auto& raw = at1.at("raw-pixels");
  EXPECT_EQ(raw.at("xray"), nlohmann::ordered_json::parse(R"({"checked": 3, "above_chance": 2})"));
  EXPECT_EQ(raw.at("ct->xray").at("above_chance"), 3);
  EXPECT_FALSE(raw.contains("ct"));  // no query in any seed: never checked
  const auto& hist = at1.at("histogram");
  EXPECT_EQ(hist.at("xray"), nlohmann::ordered_json::parse(R"({"checked": 2, "above_chance": 0})"));
  // At k = 5 chance (0.68 and 1.0, row_metrics) lies above every interval.
  EXPECT_EQ(s.at("probe_checks").at("recall@5").at("raw-pixels").at("xray").at("above_chance"), 0);

  const std::string md = seed_summary_markdown(s);
  const auto probes = md.find(
      "## Shortcut probes over seeds\n\nIn how many seeds (of those where the row has an "
      "interval) each probe's recall@1 95 % interval lies above chance.");
  ASSERT_NE(probes, std::string::npos) << md;
  EXPECT_GT(probes, md.find("## Verdict over seeds"));
  EXPECT_LT(probes, md.find("## recall@1\n"));
  EXPECT_NE(md.find("| row | raw-pixels | histogram |\n| --- | ---: | ---: |\n"
                    "| xray | 2 of 3 | 0 of 2 |\n| ct | — | — |\n| ct->xray | 3 of 3 | 0 of 2 |\n",
                    probes),
            std::string::npos)
      << md;

  // Without probe columns there is neither the key nor the table.
  const auto plain = seed_summary(
      {to_json({{"trained", verdict_report(0.4, 0.5)}, {"other-run", verdict_report(0.3, 0.5)}})});
  EXPECT_FALSE(plain.contains("probe_checks"));
  EXPECT_EQ(seed_summary_markdown(plain).find("Shortcut probes"), std::string::npos);
}

TEST(Seeds, MismatchedReportsAreRefused) {
  const auto a =
      to_json({{"trained", verdict_report(0.2, 0.1)}, {"histogram", verdict_report(0.1, 0.1)}});
  const auto b = to_json({{"trained", verdict_report(0.2, 0.1)}});
  std::string err = error_of([&] { seed_summary({a, b}); });
  EXPECT_NE(err.find("report 2 of 2 has other encoders or rows than report 1 of 2: no "
                     "'histogram per_modality xray'"),
            std::string::npos)
      << err;
  err = error_of([&] { seed_summary({b, a}, {}, {"b.json", "a.json"}); });
  EXPECT_NE(err.find("report a.json has other encoders or rows than report b.json: "
                     "'histogram per_modality xray', which report b.json lacks"),
            std::string::npos)
      << err;
  EXPECT_NE(error_of([&] {
              seed_summary({a, b}, {}, {"a.json"});
            }).find("1 names for 2 reports"),
            std::string::npos);
  Report other_ks = verdict_report(0.2, 0.1);
  other_ks.ks = {1};
  err = error_of([&] { seed_summary({to_json(verdict_report(0.2, 0.1)), to_json(other_ks)}); });
  EXPECT_NE(err.find("report 2 of 2 has ks [1]"), std::string::npos) << err;
  Report whitened = verdict_report(0.2, 0.1);
  whitened.whiten_dims = 64;
  err = error_of([&] { seed_summary({to_json(verdict_report(0.2, 0.1)), to_json(whitened)}); });
  EXPECT_NE(err.find("report 2 of 2 was read out with eval.whiten_dims = 64, report 1 of 2 with 0"),
            std::string::npos)
      << err;
  EXPECT_NO_THROW(seed_summary({to_json(whitened), to_json(whitened)}));
  EXPECT_FALSE(error_of([] { seed_summary({}); }).empty());
}

}  // namespace
}  // namespace m3ret::eval
