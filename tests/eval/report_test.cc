// Reports: JSON layout and round trip, Markdown and comparison tables.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.h"
#include "core/fs.h"
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
  return m;
}

Report make_report(double scale) {
  Report r;
  r.ks = {1, 5, 10};
  r.split = "test";
  r.relevance = "shared-label";
  r.samples = 120;
  r.source = {"/runs/demo/checkpoints/step-000000200", 200, false};
  r.per_modality.push_back({"xray", "xray", make_metrics(40, 0.5 * scale, 0.75 * scale, 0.9 * scale, 0.4)});
  r.per_modality.push_back({"mri", "mri", make_metrics(20, 0.25 * scale, 0.5, 0.625, 0.2)});
  r.cross_modal.push_back({"ct", "mri", make_metrics(10, 0.125, 0.25, 0.5 * scale, 0.1)});
  return r;
}

TEST(Report, JsonLayoutAndRoundTrip) {
  const Report r = make_report(1.0);
  const auto j = to_json(r);
  EXPECT_EQ(j.at("format"), "m3ret-retrieval-report");
  EXPECT_EQ(j.at("format_version"), 1);
  EXPECT_EQ(j.at("split"), "test");
  EXPECT_EQ(j.at("ks"), nlohmann::ordered_json({1, 5, 10}));
  EXPECT_EQ(j.at("embeddings").at("step"), 200);
  EXPECT_DOUBLE_EQ(j.at("per_modality").at("xray").at("recall@5").get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(j.at("per_modality").at("xray").at("precision@10").get<double>(), 0.225);
  EXPECT_EQ(j.at("per_modality").at("mri").at("queries"), 20);
  EXPECT_EQ(j.at("per_modality").begin().key(), "xray");  // row order kept
  EXPECT_DOUBLE_EQ(j.at("cross_modal").at("ct->mri").at("map@10").get<double>(), 0.1);

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
  j["per_modality"]["xray"].erase("recall@5");
  fs::write_atomic(dir / "missing.json", j.dump());
  EXPECT_THROW(read_report(dir / "missing.json"), Error);
  fs::write_atomic(dir / "garbage.json", "{not json");
  EXPECT_THROW(read_report(dir / "garbage.json"), Error);
}

TEST(Report, MarkdownTables) {
  const std::string md = to_markdown(make_report(1.0));
  EXPECT_NE(md.find("| modality | queries | recall@1 | recall@5 | recall@10 | precision@1 |"),
            std::string::npos) << md;
  EXPECT_NE(md.find("| xray | 40 | 0.500 | 0.750 | 0.900 | 0.500 | 0.375 | 0.225 | 0.400 |"),
            std::string::npos) << md;
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
  EXPECT_NE(md.find("| metric | trained | random init |"), std::string::npos) << md;
  EXPECT_NE(md.find("| recall@1 | 0.500 | 0.250 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| recall@10 | 0.900 | 0.450 |"), std::string::npos) << md;
  EXPECT_NE(md.find("### mri (unseen) (20 / — queries)"), std::string::npos) << md;
  EXPECT_NE(md.find("| recall@1 | 0.250 | — |"), std::string::npos) << md;
  EXPECT_NE(md.find("| ct → mri (unseen) | 0.125 / 0.250 / 0.500 | 0.125 / 0.250 / 0.250 |"),
            std::string::npos) << md;

  const std::string text = comparison_text({{"trained", trained}, {"random init", random}}, {"mri"});
  EXPECT_NE(text.find("== xray (40 queries) =="), std::string::npos) << text;
  EXPECT_NE(text.find("metric     trained  random init\n"), std::string::npos) << text;
  EXPECT_NE(text.find("recall@1     0.500        0.250\n"), std::string::npos) << text;

  Report other = make_report(1.0);
  other.ks = {1, 5};
  EXPECT_THROW(comparison_table({{"a", trained}, {"b", other}}), Error);
}

TEST(Report, BaselinesShareOneReportWithCsvAndMarkdownBeside) {
  m3ret::testing::TempDir dir("eval-report");
  Report trained = make_report(1.0), random = make_report(0.5), pixels = make_report(0.25);
  random.source.random_init = true;
  trained.source.train_modalities = {"xray", "ct"};
  trained.unseen = {"mri"};
  write_reports(dir / "report.json",
                {{"trained", trained}, {"random init", random}, {"raw pixels", pixels}});
  const auto j = nlohmann::ordered_json::parse(fs::read_file(dir / "report.json"));
  // The encoder's metrics at top level, exactly per_modality / cross_modal.
  EXPECT_EQ(j.at("encoder"), "trained");
  EXPECT_DOUBLE_EQ(j.at("per_modality").at("xray").at("recall@1").get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j.at("cross_modal").at("ct->mri").at("recall@10").get<double>(), 0.5);
  EXPECT_EQ(j.at("per_modality").at("xray").at("queries"), 40);
  // Baselines beside it, same layout.
  const auto& b = j.at("baselines");
  EXPECT_DOUBLE_EQ(b.at("random init").at("per_modality").at("xray").at("recall@1").get<double>(), 0.25);
  EXPECT_TRUE(b.at("random init").at("embeddings").at("random_init").get<bool>());
  EXPECT_DOUBLE_EQ(b.at("raw pixels").at("cross_modal").at("ct->mri").at("recall@10").get<double>(), 0.125);
  const auto back = reports_from_json(j);
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[1].first, "random init");
  EXPECT_EQ(to_json(back[0].second), to_json(trained));
  EXPECT_EQ(to_json(back[2].second), to_json(pixels));

  const std::string csv = fs::read_file(dir / "report.csv");
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "encoder,kind,query_modality,gallery_modality,queries,gallery,recall@1,recall@5,"
            "recall@10,precision@1,precision@5,precision@10,map@10");
  EXPECT_NE(csv.find("\ntrained,per_modality,xray,xray,40,43,0.500000,0.750000,0.900000,0.500000,"
                     "0.375000,0.225000,0.400000\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\nraw pixels,cross_modal,ct,mri,10,13,"), std::string::npos) << csv;
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 3 * 3);
  const std::string md = fs::read_file(dir / "report.md");
  EXPECT_NE(md.find("| metric | trained | random init | raw pixels |"), std::string::npos) << md;
  EXPECT_NE(md.find("### mri (unseen)"), std::string::npos) << md;
  EXPECT_NE(md.find("- trained on: xray, ct; unseen (evaluated, never trained on): mri\n"),
            std::string::npos) << md;
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
  EXPECT_EQ(j.at("embeddings").at("train_modalities"),
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
                    "endoscopy, mri"), std::string::npos) << md;

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
  old["embeddings"].erase("train_modalities");
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

}  // namespace
}  // namespace m3ret::eval
