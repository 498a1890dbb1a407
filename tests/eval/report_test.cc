// Reports: JSON layout and round trip, Markdown and comparison tables.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.h"
#include "core/fs.h"
#include "eval/history.h"
#include "eval/report.h"
#include "eval_test_util.h"
#include "test_util.h"

namespace m3ret::eval {
namespace {

Metrics make_metrics(int64_t queries, double r1, double r5, double r10, double map) {
  Metrics m;
  m.queries = queries;
  m.skipped_no_label = 1;
  m.skipped_no_relevant = 2;
  m.gallery = queries + 3;
  m.recall = {{1, r1}, {5, r5}, {10, r10}};
  m.precision = {{1, r1}, {5, r5 / 2}, {10, r10 / 4}};
  m.map_k = 10;
  m.map_at_k = map;
  m.chance_recall = {{1, 0.125}, {5, 0.5}, {10, 0.75}};
  m.chance_precision = {{1, 0.125}, {5, 0.125}, {10, 0.125}};
  return m;
}

Report make_report(double scale) {
  Report r;
  r.ks = {1, 5, 10};
  r.split = "test";
  r.relevance = "shared-label";
  r.samples = 120;
  r.source.checkpoint = "/runs/demo/checkpoints/step-000000200";
  r.source.step = 200;
  r.per_modality.push_back(
      {"xray", "xray", make_metrics(40, 0.5 * scale, 0.75 * scale, 0.9 * scale, 0.4)});
  r.per_modality.push_back({"mri", "mri", make_metrics(20, 0.25 * scale, 0.5, 0.625, 0.2)});
  r.cross_modal.push_back({"ct", "mri", make_metrics(10, 0.125, 0.25, 0.5 * scale, 0.1)});
  // Intervals on the xray row only (as if the others had no bootstrap).
  Metrics& x = r.per_modality[0].metrics;
  x.ci_recall = {{1, {0.375 * scale, 0.625 * scale}},
                 {5, {0.625 * scale, 0.875 * scale}},
                 {10, {0.8 * scale, 1.0 * scale}}};
  x.ci_precision = {{1, {0.375, 0.625}}, {5, {0.25, 0.5}}, {10, {0.125, 0.25}}};
  r.bootstrap = 1000;
  return r;
}

TEST(Report, JsonLayoutAndRoundTrip) {
  const Report r = make_report(1.0);
  const auto j = to_json(r);
  EXPECT_EQ(j.at("format"), "m3ret-retrieval-report");
  EXPECT_EQ(j.at("format_version"), 2);
  EXPECT_EQ(j.at("split"), "test");
  EXPECT_EQ(j.at("ks"), nlohmann::ordered_json({1, 5, 10}));
  EXPECT_EQ(j.at("bootstrap"), 1000);
  ASSERT_EQ(j.at("encoders").size(), 1u);
  const auto& e = j.at("encoders").at("encoder");  // one encoder, the same shape as a comparison
  EXPECT_EQ(e.at("embeddings").at("step"), 200);
  EXPECT_DOUBLE_EQ(e.at("per_modality").at("xray").at("recall@5").get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(e.at("per_modality").at("xray").at("precision@10").get<double>(), 0.225);
  EXPECT_EQ(e.at("per_modality").at("xray").at("ci95").at("recall@5"),
            nlohmann::ordered_json({0.625, 0.875}));
  EXPECT_DOUBLE_EQ(e.at("per_modality").at("xray").at("chance").at("recall@10").get<double>(),
                   0.75);
  EXPECT_DOUBLE_EQ(e.at("per_modality").at("xray").at("chance").at("precision@5").get<double>(),
                   0.125);
  EXPECT_FALSE(e.at("per_modality").at("mri").contains("ci95"));  // no interval, no key
  EXPECT_EQ(e.at("per_modality").at("mri").at("queries"), 20);
  EXPECT_EQ(e.at("per_modality").begin().key(), "xray");  // row order kept
  EXPECT_DOUBLE_EQ(e.at("cross_modal").at("ct->mri").at("map@10").get<double>(), 0.1);
  EXPECT_EQ(j.at("verdict").at("k"), 1);
  EXPECT_TRUE(j.at("verdict").at("rows").at("xray").at("beats_chance").get<bool>());

  const Report back = report_from_json(j);
  EXPECT_EQ(to_json(back), j);
  ASSERT_NE(back.find("ct->mri"), nullptr);
  EXPECT_EQ(back.find("ct->mri")->query_modality, "ct");
  EXPECT_EQ(back.find("ct->mri")->gallery_modality, "mri");
}

TEST(Report, FilesAndErrors) {
  m3ret::testing::TempDir dir("eval-report");
  write_report(dir / "report.json", make_report(1.0));
  ASSERT_TRUE(std::filesystem::exists(dir / "report.md"));
  EXPECT_EQ(to_json(read_report(dir / "report.json")), to_json(make_report(1.0)));

  auto j = to_json(make_report(1.0));
  j["format_version"] = 7;
  fs::write_atomic(dir / "v7.json", j.dump());
  try {
    read_report(dir / "v7.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("v7.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("format_version is 7"), std::string::npos) << e.what();
  }
  j = to_json(make_report(1.0));
  j["encoders"]["encoder"]["per_modality"]["xray"].erase("recall@5");
  fs::write_atomic(dir / "missing.json", j.dump());
  const std::string missing = testing::error_of([&] { read_report(dir / "missing.json"); });
  EXPECT_NE(missing.find("missing.json"), std::string::npos) << missing;
  EXPECT_NE(missing.find("encoder 'encoder'"), std::string::npos) << missing;
  EXPECT_NE(missing.find("per_modality 'xray'"), std::string::npos) << missing;
  EXPECT_NE(missing.find("recall@5"), std::string::npos) << missing;
  fs::write_atomic(dir / "garbage.json", "{not json");
  EXPECT_THROW(read_report(dir / "garbage.json"), Error);
}

TEST(Report, MarkdownTables) {
  const std::string md = to_markdown(make_report(1.0));
  EXPECT_NE(
      md.find("| modality | queries | recall@1 | recall@5 | recall@10 | precision@1 | "
              "precision@5 | precision@10 | map@10 | chance R@1 | chance R@5 | chance R@10 |"),
      std::string::npos)
      << md;
  // Values with their 95 % interval where there is one, then the chance levels.
  EXPECT_NE(
      md.find("| xray | 40 | 0.500 [0.375–0.625] | 0.750 [0.625–0.875] | 0.900 [0.800–1.000] | "
              "0.500 [0.375–0.625] | 0.375 [0.250–0.500] | 0.225 [0.125–0.250] | 0.400 | "
              "0.125 | 0.500 | 0.750 |"),
      std::string::npos)
      << md;
  EXPECT_NE(md.find("| mri | 20 | 0.250 | 0.500 | 0.625 | 0.250 | 0.250 | 0.156 | 0.200 | 0.125 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| ct → mri | 10 |"), std::string::npos) << md;
  EXPECT_NE(md.find("step-000000200"), std::string::npos);
}

TEST(Report, ComparisonTableSideBySide) {
  Report trained = make_report(1.0);
  Report random = make_report(0.5);
  random.source.random_init = true;
  random.per_modality.pop_back();  // no mri in the random column
  const std::string md = comparison_table({{"trained", trained}, {"random init", random}}, {"mri"});
  EXPECT_NE(md.find("### xray (40 queries)"), std::string::npos) << md;
  EXPECT_NE(md.find("| metric | trained | random init | chance |"), std::string::npos) << md;
  EXPECT_NE(md.find("| recall@1 | 0.500 [0.375–0.625] | 0.250 [0.188–0.312] | 0.125 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| recall@10 | 0.900 [0.800–1.000] | 0.450 [0.400–0.500] | 0.750 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| map@10 | 0.400 | 0.400 | — |"), std::string::npos) << md;
  EXPECT_NE(md.find("### mri (unseen) (20 / — queries)"), std::string::npos) << md;
  EXPECT_NE(md.find("| recall@1 | 0.250 | — | 0.125 |"), std::string::npos) << md;
  // Cross-modal: one table per k, the encoders and chance side by side.
  EXPECT_NE(
      md.find("### cross-modal recall@10\n\n| query → gallery | trained | random init | chance |"),
      std::string::npos)
      << md;
  EXPECT_NE(md.find("| ct → mri (unseen) | 0.500 | 0.250 | 0.750 |"), std::string::npos) << md;

  const std::string text =
      comparison_text({{"trained", trained}, {"random init", random}}, {"mri"});
  EXPECT_NE(text.find("== xray (40 queries) =="), std::string::npos) << text;
  EXPECT_NE(text.find("metric                 trained          random init  chance\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("recall@1   0.500 [0.375–0.625]  0.250 [0.188–0.312]   0.125\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("recall@1     0.250            —   0.125\n"), std::string::npos) << text;

  Report other = make_report(1.0);
  other.ks = {1, 5};
  EXPECT_THROW(comparison_table({{"a", trained}, {"b", other}}), Error);
}

TEST(Report, ComparisonIsOneDocumentWithCsvAndMarkdownBeside) {
  m3ret::testing::TempDir dir("eval-report");
  Report trained = make_report(1.0), random = make_report(0.5), pixels = make_report(0.25);
  random.source.random_init = true;
  trained.source.train_modalities = {"xray", "ct"};
  trained.source.weights = "teacher";
  trained.unseen = {"mri"};
  write_reports(dir / "report.json",
                {{"trained", trained}, {"random-init", random}, {"raw-pixels", pixels}});
  const auto j = nlohmann::ordered_json::parse(fs::read_file(dir / "report.json"));
  EXPECT_EQ(j.at("format_version"), 2);
  EXPECT_EQ(j.at("unseen_modalities"),
            nlohmann::ordered_json::array({"mri"}));  // the first encoder's
  // Every encoder under "encoders", in column order, with the same layout.
  const auto& e = j.at("encoders");
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e.begin().key(), "trained");
  EXPECT_EQ(std::next(e.begin()).key(), "random-init");
  EXPECT_DOUBLE_EQ(e.at("trained").at("per_modality").at("xray").at("recall@1").get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(e.at("trained").at("cross_modal").at("ct->mri").at("recall@10").get<double>(),
                   0.5);
  EXPECT_EQ(e.at("trained").at("embeddings").at("weights"), "teacher");
  EXPECT_EQ(e.at("trained").at("unseen_modalities"), nlohmann::ordered_json::array({"mri"}));
  EXPECT_EQ(e.at("raw-pixels").at("unseen_modalities"), nlohmann::ordered_json::array());
  EXPECT_DOUBLE_EQ(e.at("random-init").at("per_modality").at("xray").at("recall@1").get<double>(),
                   0.25);
  EXPECT_TRUE(e.at("random-init").at("embeddings").at("random_init").get<bool>());
  EXPECT_DOUBLE_EQ(e.at("raw-pixels").at("cross_modal").at("ct->mri").at("recall@10").get<double>(),
                   0.125);
  // The verdict of the first encoder at k = 1: xray [0.375, 0.625] is above chance (0.125)
  // and above random-init's 0.25 and raw-pixels' 0.125.
  const auto& v = j.at("verdict").at("rows").at("xray");
  EXPECT_TRUE(v.at("beats_chance").get<bool>());
  EXPECT_TRUE(v.at("beats").at("random-init").get<bool>());
  EXPECT_TRUE(v.at("beats").at("raw-pixels").get<bool>());
  EXPECT_TRUE(j.at("verdict").at("rows").at("mri").at("ci95").is_null());

  const auto back = reports_from_json(j);
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[1].first, "random-init");
  EXPECT_EQ(back[0].second.source.weights, "teacher");
  EXPECT_EQ(to_json(back[0].second), to_json(trained));
  EXPECT_EQ(to_json(back[2].second), to_json(pixels));
  EXPECT_EQ(to_json(back), j);
  EXPECT_EQ(read_reports(dir / "report.json").size(), 3u);

  const std::string csv = fs::read_file(dir / "report.csv");
  EXPECT_EQ(
      csv.substr(0, csv.find('\n')),
      "encoder,kind,query_modality,gallery_modality,queries,gallery,recall@1,recall@5,"
      "recall@10,precision@1,precision@5,precision@10,map@10,chance_recall@1,chance_recall@5,"
      "chance_recall@10,chance_precision@1,chance_precision@5,chance_precision@10,"
      "recall@1_lo,recall@1_hi,recall@5_lo,recall@5_hi,recall@10_lo,recall@10_hi,"
      "precision@1_lo,precision@1_hi,precision@5_lo,precision@5_hi,precision@10_lo,precision@10_hi,"
      "absent");
  EXPECT_NE(
      csv.find("\ntrained,per_modality,xray,xray,40,43,0.500000,0.750000,0.900000,0.500000,"
               "0.375000,0.225000,0.400000,0.125000,0.500000,0.750000,0.125000,0.125000,0.125000,"
               "0.375000,0.625000,0.625000,0.875000,0.800000,1.000000,"
               "0.375000,0.625000,0.250000,0.500000,0.125000,0.250000,\n"),
      std::string::npos)
      << csv;
  // No interval: empty cells.
  EXPECT_NE(
      csv.find("\ntrained,per_modality,mri,mri,20,23,0.250000,0.500000,0.625000,0.250000,"
               "0.250000,0.156250,0.200000,0.125000,0.500000,0.750000,0.125000,0.125000,0.125000"
               ",,,,,,,,,,,,,\n"),
      std::string::npos)
      << csv;
  EXPECT_NE(csv.find("\nraw-pixels,cross_modal,ct,mri,10,13,"), std::string::npos) << csv;
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 3 * 3);
  const std::string md = fs::read_file(dir / "report.md");
  EXPECT_NE(md.find("| metric | trained | random-init | raw-pixels | chance |"), std::string::npos)
      << md;
  EXPECT_NE(md.find("### mri (unseen)"), std::string::npos) << md;
  EXPECT_NE(md.find("- trained on: xray, ct; unseen (evaluated, never trained on): mri\n"),
            std::string::npos)
      << md;
  EXPECT_NE(
      md.find("- xray R@1: trained 0.500 [0.375–0.625] beats chance 0.125, random-init 0.250, "
              "raw-pixels 0.125\n"),
      std::string::npos)
      << md;
}

// Per-label figures: in JSON under each row's "per_label" (read back), and in
// Markdown one table row per (modality, label) with every encoder and chance.
TEST(Report, PerLabelFiguresInJsonAndMarkdown) {
  m3ret::testing::TempDir dir("eval-report");
  Report trained = make_report(1.0), pixels = make_report(0.5);
  LabelMetrics stripes;
  stripes.queries = 32;
  stripes.recall = {{1, 0.5}, {5, 0.75}, {10, 1.0}};
  stripes.chance_recall = {{1, 0.125}, {5, 0.5}, {10, 0.75}};
  stripes.ci_recall = {{1, {0.375, 0.625}}, {5, {0.625, 0.875}}, {10, {1.0, 1.0}}};
  LabelMetrics dots = stripes;
  dots.queries = 8;
  dots.recall[1] = 0.25;
  trained.per_modality[0].metrics.per_label = {{"stripes", stripes}, {"dots", dots}};
  stripes.recall[1] = 0.125;
  stripes.ci_recall.clear();
  pixels.per_modality[0].metrics.per_label = {{"stripes", stripes}};
  write_reports(dir / "report.json", {{"trained", trained}, {"raw-pixels", pixels}});

  const auto j = nlohmann::ordered_json::parse(fs::read_file(dir / "report.json"));
  const auto& l = j.at("encoders").at("trained").at("per_modality").at("xray").at("per_label");
  EXPECT_EQ(l.begin().key(), "dots");  // by name
  EXPECT_EQ(l.at("stripes").at("queries"), 32);
  EXPECT_DOUBLE_EQ(l.at("stripes").at("recall@5").get<double>(), 0.75);
  EXPECT_EQ(l.at("stripes").at("ci95").at("recall@1"), nlohmann::ordered_json({0.375, 0.625}));
  EXPECT_DOUBLE_EQ(l.at("stripes").at("chance").at("recall@1").get<double>(), 0.125);
  const auto& px = j.at("encoders").at("raw-pixels").at("per_modality").at("xray");
  EXPECT_FALSE(px.at("per_label").at("stripes").contains("ci95"));
  EXPECT_FALSE(j.at("encoders").at("trained").at("per_modality").at("mri").contains("per_label"));
  const auto back = reports_from_json(j);
  EXPECT_EQ(to_json(back), j);
  EXPECT_EQ(back[0].second.find("xray")->metrics.per_label.at("dots").queries, 8);

  const std::string md = fs::read_file(dir / "report.md");
  EXPECT_NE(md.find("## recall@1 per label (the queries that carry the label, relevant: a sample "
                    "that carries it)"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| modality / label | trained | raw-pixels | chance |"), std::string::npos)
      << md;
  EXPECT_NE(md.find("| xray / dots (8) | 0.250 [0.375–0.625] | — | 0.125 |"), std::string::npos)
      << md;
  EXPECT_NE(md.find("| xray / stripes (32) | 0.500 [0.375–0.625] | 0.125 | 0.125 |"),
            std::string::npos)
      << md;

  // A malformed entry names the encoder, the row and the label.
  auto bad = j;
  bad["encoders"]["trained"]["per_modality"]["xray"]["per_label"]["dots"].erase("recall@5");
  const std::string err = testing::error_of([&] { reports_from_json(bad, "r.json"); });
  EXPECT_NE(err.find("r.json"), std::string::npos) << err;
  EXPECT_NE(err.find("per_modality 'xray'"), std::string::npos) << err;
  EXPECT_NE(err.find("per_label \"dots\""), std::string::npos) << err;
  EXPECT_NE(err.find("recall@5"), std::string::npos) << err;
}

// Reports written by earlier versions (format_version 1: the encoder at top
// level, the others under "baselines", no intervals or chance) still read.
TEST(Report, ReadsVersion1Files) {
  const auto v1 = nlohmann::ordered_json::parse(R"({
    "format": "m3ret-retrieval-report", "format_version": 1, "split": "test",
    "relevance": "shared-label", "ks": [1, 5], "samples": 12,
    "embeddings": {"checkpoint": "/r/checkpoints/step-000000010", "step": 10, "random_init": false,
                   "train_modalities": ["xray"]},
    "unseen_modalities": ["ct"],
    "per_modality": {"xray": {"queries": 4, "skipped_no_label": 0, "skipped_no_relevant": 0,
                              "gallery": 4, "recall@1": 0.5, "recall@5": 1.0,
                              "precision@1": 0.5, "precision@5": 0.4, "map@5": 0.6}},
    "cross_modal": {},
    "encoder": "encoder",
    "baselines": {"random init": {
        "embeddings": {"checkpoint": "", "step": 10, "random_init": true},
        "per_modality": {"xray": {"queries": 4, "skipped_no_label": 0, "skipped_no_relevant": 0,
                                  "gallery": 4, "recall@1": 0.25, "recall@5": 1.0,
                                  "precision@1": 0.25, "precision@5": 0.4, "map@5": 0.3}},
        "cross_modal": {}}}})");
  const auto columns = reports_from_json(v1, "old.json");
  ASSERT_EQ(columns.size(), 2u);
  EXPECT_EQ(columns[0].first, "encoder");
  EXPECT_EQ(columns[1].first, "random init");
  EXPECT_EQ(columns[0].second.unseen, std::vector<std::string>{"ct"});
  EXPECT_EQ(columns[0].second.source.step, 10);
  EXPECT_TRUE(columns[1].second.source.random_init);
  const Metrics& m = columns[1].second.per_modality.at(0).metrics;
  EXPECT_DOUBLE_EQ(m.recall.at(1), 0.25);
  EXPECT_TRUE(m.ci_recall.empty());
  EXPECT_DOUBLE_EQ(m.chance_recall.at(1), 0.0);
  EXPECT_EQ(report_from_json(v1).per_modality.at(0).metrics.map_at_k, 0.6);
  // Rewritten as version 2.
  EXPECT_EQ(to_json(columns).at("format_version"), 2);
  EXPECT_EQ(reports_from_json(to_json(columns)).size(), 2u);
  // Other versions are refused, naming the origin.
  auto v3 = v1;
  v3["format_version"] = 3;
  const std::string err = testing::error_of([&] { reports_from_json(v3, "new.json"); });
  EXPECT_NE(err.find("new.json"), std::string::npos) << err;
  EXPECT_NE(err.find("format_version is 3"), std::string::npos) << err;
}

// Which modalities are unseen comes from the data: those evaluated but absent
// from the training run's train.modalities recorded in the embeddings.
TEST(Report, UnseenModalitiesAreThoseMissingFromTraining) {
  EmbeddingSet s;
  s.D = 2;
  for (const char* m : {"xray", "ct", "endoscopy", "mri"}) {
    testing::add(s, m, std::string(m) + "-p1", {"A"}, {1, 0});
    testing::add(s, m, std::string(m) + "-p2", {"A"}, {0.8f, 0.6f});
    testing::add(s, m, std::string(m) + "-p3", {"B"}, {0, 1});
  }
  EvalConfig c;
  // Unknown training modalities (raw pixels, older files): nothing is unseen.
  Report unknown = evaluate(s, c);
  EXPECT_TRUE(unknown.unseen.empty());
  EXPECT_EQ(to_json(unknown).at("unseen_modalities"), nlohmann::ordered_json::array());
  EXPECT_EQ(to_markdown(unknown).find("(unseen)"), std::string::npos);

  // Trained on xray and ct (and "other", absent here): endoscopy and mri are unseen.
  s.attrs.train_modalities = {"xray", "ct", "other"};
  Report r = evaluate(s, c);
  EXPECT_EQ(r.unseen, (std::vector<std::string>{"endoscopy", "mri"}));
  const auto j = to_json(r);
  EXPECT_EQ(j.at("unseen_modalities"), nlohmann::ordered_json::array({"endoscopy", "mri"}));
  EXPECT_EQ(j.at("encoders").at("encoder").at("embeddings").at("train_modalities"),
            nlohmann::ordered_json::array({"xray", "ct", "other"}));
  EXPECT_EQ(report_from_json(j).unseen, r.unseen);

  const std::string md = to_markdown(r);
  EXPECT_NE(md.find("| mri (unseen) | 2 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| endoscopy (unseen) | 2 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| xray | 2 |"), std::string::npos) << md;
  EXPECT_EQ(md.find("xray (unseen)"), std::string::npos) << md;
  EXPECT_EQ(md.find("ct (unseen)"), std::string::npos) << md;
  EXPECT_NE(md.find("| ct → mri (unseen) |"), std::string::npos) << md;
  EXPECT_NE(md.find("- trained on: xray, ct, other; unseen (evaluated, never trained on): "
                    "endoscopy, mri"),
            std::string::npos)
      << md;

  // Comparison: the encoder's (first column's) unseen modalities are marked.
  const std::vector<std::pair<std::string, Report>> columns = {{"trained", r},
                                                               {"raw pixels", unknown}};
  EXPECT_EQ(unseen_modalities(columns), (std::set<std::string>{"endoscopy", "mri"}));
  const std::string text = comparison_text(columns, unseen_modalities(columns));
  EXPECT_NE(text.find("== mri (unseen) (2 queries) =="), std::string::npos) << text;
  EXPECT_NE(text.find("== ct (2 queries) =="), std::string::npos) << text;

  // Every modality trained on: none unseen.
  s.attrs.train_modalities = {"xray", "ct", "endoscopy", "mri"};
  EXPECT_TRUE(evaluate(s, c).unseen.empty());

  // Reports written before the field existed read as "none unseen, training unknown".
  auto old = to_json(r);
  old.erase("unseen_modalities");
  old["encoders"]["encoder"].erase("unseen_modalities");
  old["encoders"]["encoder"]["embeddings"].erase("train_modalities");
  const Report back = report_from_json(old);
  EXPECT_TRUE(back.unseen.empty());
  EXPECT_TRUE(back.source.train_modalities.empty());
}

TEST(Report, EvaluatedReportSurvivesJson) {
  auto s = testing::random_set(80, 6, {"xray", "ct"}, 10, 3, 5);
  EvalConfig c;
  const Report r = evaluate(s, c);
  EXPECT_EQ(to_json(report_from_json(to_json(r))), to_json(r));
}

// A set with one evaluable modality (xray), one whose samples are all one
// patient (mri: too few patients) and one whose patients share no label (ct).
EmbeddingSet set_with_absent_rows() {
  EmbeddingSet s;
  s.D = 2;
  testing::add(s, "xray", "p1", {"A"}, {1, 0});
  testing::add(s, "xray", "p2", {"A"}, {1, 0.1f});
  testing::add(s, "xray", "p3", {"B"}, {0, 1});
  testing::add(s, "mri", "p1", {"A"}, {1, 0});
  testing::add(s, "mri", "p1", {"A"}, {0.9f, 0.1f});
  testing::add(s, "ct", "p4", {"C"}, {1, 0});
  testing::add(s, "ct", "p5", {"D"}, {0, 1});
  return s;
}

// Empty is not zero: a row without any evaluable query is absent with its
// reason in every output, and no mean over rows or seeds counts it as 0.
TEST(Report, AbsentRowsAreNeverReportedOrAveragedAsZero) {
  EvalConfig c;
  c.ks = {1, 5};
  c.cross_modal = false;
  const Report r = evaluate(set_with_absent_rows(), c);
  const ReportRow* mri = r.find("mri");
  const ReportRow* ct = r.find("ct");
  ASSERT_TRUE(mri && ct);
  EXPECT_TRUE(r.find("xray")->metrics.evaluated());
  EXPECT_FALSE(mri->metrics.evaluated());
  EXPECT_EQ(mri->metrics.skipped_no_candidate, 2);
  EXPECT_NE(absent_reason(mri->metrics).find("too few patients"), std::string::npos)
      << absent_reason(mri->metrics);
  EXPECT_NE(absent_reason(ct->metrics).find("2 with no relevant item"), std::string::npos)
      << absent_reason(ct->metrics);
  EXPECT_EQ(absent_reason(r.find("xray")->metrics), "");

  // JSON: null figures and the reason; a reader averaging the numbers it finds
  // (as the orchestrator's mean does) sees xray only.
  const auto j = to_json(r);
  const auto& rows = j.at("encoders").at("encoder").at("per_modality");
  EXPECT_TRUE(rows.at("mri").at("recall@1").is_null());
  EXPECT_TRUE(rows.at("mri").at("map@5").is_null());
  EXPECT_TRUE(rows.at("mri").at("chance").at("recall@1").is_null());
  EXPECT_EQ(rows.at("mri").at("absent"), absent_reason(mri->metrics));
  EXPECT_FALSE(rows.at("xray").contains("absent"));
  int numeric = 0;
  for (const auto& [name, row] : rows.items()) numeric += row.at("recall@1").is_number();
  EXPECT_EQ(numeric, 1);
  const Report back = report_from_json(j);
  EXPECT_FALSE(back.find("ct")->metrics.evaluated());
  EXPECT_EQ(absent_reason(back.find("ct")->metrics), absent_reason(ct->metrics));
  EXPECT_EQ(to_json(back), j);

  // CSV: empty metric cells, the reason in the last column; Markdown and text say so.
  const std::string csv = to_csv({{"encoder", r}});
  EXPECT_NE(csv.find("\nencoder,per_modality,mri,mri,0,2,,,,,,,,,,,,,,,,,,"
                     "no evaluable query: 2 with no candidate from another patient (too few "
                     "patients)\n"),
            std::string::npos)
      << csv;
  EXPECT_EQ(csv.find("0.000000"), std::string::npos) << csv;
  const std::string md = to_markdown(r);
  EXPECT_NE(md.find("- mri — absent: no evaluable query"), std::string::npos) << md;
  EXPECT_NE(comparison_text({{"a", r}, {"b", r}}).find("a ct — absent: no evaluable query"),
            std::string::npos);

  // Seeds: a row absent in one seed is averaged over the others only.
  Report evaluated = r;
  Report& r2 = evaluated;
  for (auto& row : r2.per_modality)
    if (row.name() == "mri") row.metrics = r.find("xray")->metrics;
  const double x1 = r.find("xray")->metrics.recall.at(1);
  const auto summary = seed_summary({to_json(r), to_json(r2)});
  const auto& d = summary.at("encoders").at("encoder").at("per_modality").at("mri").at("recall@1");
  EXPECT_EQ(d.at("evaluated"), 1);
  EXPECT_DOUBLE_EQ(d.at("mean").get<double>(), x1);
  EXPECT_TRUE(d.at("values").at(0).is_null());
  const auto& none =
      summary.at("encoders").at("encoder").at("per_modality").at("ct").at("recall@1");
  EXPECT_TRUE(none.at("mean").is_null());
  const std::string smd = seed_summary_markdown(summary);
  EXPECT_NE(smd.find("| ct | — (absent) |"), std::string::npos) << smd;
  EXPECT_NE(smd.find("(1 of 2 seeds)"), std::string::npos) << smd;
}

// All-zero or constant embeddings still give figures, but with a warning in
// the report (JSON, Markdown) that the rankings are by position only.
TEST(Report, ZeroAndConstantEmbeddingsAreWarnedAbout) {
  EvalConfig c;
  c.ks = {1};
  EmbeddingSet s = set_with_absent_rows();
  EXPECT_TRUE(evaluate(s, c).warnings.empty());
  std::fill(s.X.begin(), s.X.begin() + 6, 0.0f);  // the three xray rows
  Report r = evaluate(s, c);
  ASSERT_EQ(r.warnings.size(), 2u);
  EXPECT_EQ(r.warnings[0],
            "3 of the 7 embeddings are all zero: they are equally similar to "
            "everything and rank by position only");
  EXPECT_NE(r.warnings[1].find("all 3 embeddings of xray are the same vector"), std::string::npos);
  for (size_t i = 0; i < s.X.size(); i += 2) s.X[i] = 2, s.X[i + 1] = 1;  // all one direction
  r = evaluate(s, c);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0],
            "all 7 embeddings are the same vector (constant): every ranking is by "
            "position only and the figures say nothing about the encoder");
  const auto j = to_json(r);
  EXPECT_EQ(j.at("encoders").at("encoder").at("warnings").at(0), r.warnings[0]);
  EXPECT_EQ(report_from_json(j).warnings, r.warnings);
  EXPECT_NE(to_markdown(r).find("- **warning**: all 7 embeddings are the same vector"),
            std::string::npos)
      << to_markdown(r);
}

// The eval history (eval/history.h): where a checkpoint's run keeps it, one
// line per evaluation with the encoder's rows and the baselines, appended.
TEST(History, LinesOfARunAreAppendedBesideItsCheckpoints) {
  m3ret::testing::TempDir dir("history");
  EXPECT_EQ(history_of_checkpoint(dir / "run/checkpoints/step-000000200"),
            dir / "run/eval/history.jsonl");
  EXPECT_EQ(history_of_checkpoint(dir / "run/checkpoints/step-000000200/"),
            dir / "run/eval/history.jsonl");
  EXPECT_EQ(history_of_checkpoint(dir / "elsewhere/step-000000200"), std::filesystem::path());
  const std::vector<std::pair<std::string, Report>> columns = {{"trained", make_report(1.0)},
                                                               {"random-init", make_report(0.5)}};
  const auto line = history_line(dir / "r.json", columns, "2026-11-29T01:02:03Z");
  EXPECT_EQ(line.at("format"), "m3ret-eval-history");
  EXPECT_EQ(line.at("format_version"), 1);
  EXPECT_EQ(line.at("step"), 200);
  EXPECT_EQ(line.at("time"), "2026-11-29T01:02:03Z");
  EXPECT_EQ(line.at("report"), (dir / "r.json").string());
  EXPECT_DOUBLE_EQ(line.at("per_modality").at("xray").at("recall@1").get<double>(), 0.5);
  EXPECT_TRUE(line.at("cross_modal").contains("ct->mri"));
  EXPECT_EQ(line.at("whiten_dims"), 0);
  auto whitened = columns;
  whitened.front().second.whiten_dims = 64;
  EXPECT_EQ(history_line(dir / "r.json", whitened, "t").at("whiten_dims"), 64);
  EXPECT_DOUBLE_EQ(line.at("baselines")
                       .at("random-init")
                       .at("per_modality")
                       .at("xray")
                       .at("recall@1")
                       .get<double>(),
                   0.25);
  const auto history = dir / "run/eval/history.jsonl";
  append_history(history, dir / "r.json", columns);
  append_history(history, dir / "r.json", columns);
  const std::string text = fs::read_file(history);
  ASSERT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;
  const auto first = nlohmann::json::parse(text.substr(0, text.find('\n')));
  EXPECT_EQ(first.at("step"), 200);
  EXPECT_EQ(first.at("time").get<std::string>().size(), 20u) << first.at("time");
  fs::write_atomic(dir / "a-file", "");
  EXPECT_THROW(append_history(dir / "a-file/history.jsonl", dir / "r.json", columns), Error);
}

}  // namespace
}  // namespace m3ret::eval
