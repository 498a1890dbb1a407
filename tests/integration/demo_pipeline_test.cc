// End to end: `m3ret demo` at a small size, then every artifact is checked.
// Takes several minutes (one demo run shared by all the tests of the suite).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/embeddings_file.h"
#include "sharding/shard_set.h"
#include "test_util.h"

namespace m3ret {
namespace {

namespace stdfs = std::filesystem;
using nlohmann::json;

json read_json(const stdfs::path& p) {
  std::ifstream in(p);
  EXPECT_TRUE(in.good()) << p;
  return json::parse(in);
}

class DemoPipeline : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("demo");
    out_ = (dir_->path() / "demo").string();
    // Small: 3 patients per class (2 of them test, so that every test query of
    // every modality has a relevant candidate of another patient), few steps;
    // everything else as the shipped demo (train.modalities without mri).
    std::string cmd = testing::m3ret_binary().string() + " demo --out " + out_ +
                      " --set synth.patients_per_class=3 --set synth.samples_per_patient=2"
                      " --set synth.test_fraction=0.5"
                      " --set train.max_steps=6 --set train.warmup_steps=2"
                      " --set train.checkpoint_every=3 --set train.global_batch_size=8";
    rc_ = testing::run_command(cmd, &log_);
  }
  static void TearDownTestSuite() { delete dir_; }

  static testing::TempDir* dir_;
  static std::string out_, log_;
  static int rc_;
};
testing::TempDir* DemoPipeline::dir_ = nullptr;
std::string DemoPipeline::out_, DemoPipeline::log_;
int DemoPipeline::rc_ = -1;

TEST_F(DemoPipeline, RunsAndPrintsTheRecallTable) {
  ASSERT_EQ(rc_, 0) << log_;
  for (const char* m : {"xray", "ultrasound", "endoscopy", "ct", "mri"}) {
    EXPECT_NE(log_.find(m), std::string::npos) << m << "\n" << log_;
  }
  for (const char* b : {"random-init", "raw-pixels", "histogram"})
    EXPECT_NE(log_.find(b), std::string::npos) << b << "\n" << log_;
  EXPECT_NE(log_.find("R@1"), std::string::npos) << log_;
  EXPECT_NE(log_.find("== mri (unseen)"), std::string::npos) << log_;
  EXPECT_EQ(log_.find("== ct (unseen)"), std::string::npos) << log_;
}

TEST_F(DemoPipeline, ShardsCoverEveryModalityFromRealFiles) {
  ASSERT_EQ(rc_, 0) << log_;
  stdfs::path out(out_);
  // The generated files are real formats.
  int nii = 0, dcm = 0, png = 0, mp4 = 0;
  for (auto& e : stdfs::recursive_directory_iterator(out / "data")) {
    auto name = e.path().filename().string();
    nii += name.size() > 7 && name.substr(name.size() - 7) == ".nii.gz";
    dcm += e.path().extension() == ".dcm";
    png += e.path().extension() == ".png";
    mp4 += e.path().extension() == ".mp4";
  }
  EXPECT_GT(nii, 0);
  EXPECT_GT(dcm + png, 0);
  EXPECT_GT(mp4, 0);
  auto shards = sharding::ShardSet::open(out / "shards");
  for (const char* m : {"xray", "ultrasound", "endoscopy", "ct", "mri"}) {
    ASSERT_TRUE(shards->has(m)) << m;
    EXPECT_GT(shards->info(m).count, 0) << m;
  }
  EXPECT_EQ(shards->info("endoscopy").C, 3);
  EXPECT_EQ(shards->info("xray").C, 1);
  EXPECT_GT(shards->info("ct").T, 1);
  EXPECT_TRUE(stdfs::exists(out / "shards" / "rejects.csv"));
}

TEST_F(DemoPipeline, TrainingRanOnTwoRanksAndCheckpointed) {
  ASSERT_EQ(rc_, 0) << log_;
  stdfs::path run = stdfs::path(out_) / "run";
  EXPECT_TRUE(stdfs::exists(run / "logs" / "rank-0.log"));
  EXPECT_TRUE(stdfs::exists(run / "logs" / "rank-1.log"));
  EXPECT_TRUE(stdfs::exists(run / "checkpoints" / "step-000000006"));
  auto runinfo = read_json(run / "run.json");
  EXPECT_EQ(runinfo["world_size"], 2);
  // metrics.jsonl: one line per logged step, losses finite.
  std::ifstream metrics(run / "metrics.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(metrics, line)) {
    auto j = json::parse(line);
    ASSERT_TRUE(j.contains("loss")) << line;
    EXPECT_TRUE(std::isfinite(j["loss"].get<double>())) << line;
    ++lines;
  }
  EXPECT_GE(lines, 1);
  std::ifstream cfg(run / "config.toml");
  std::string text((std::istreambuf_iterator<char>(cfg)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("# git revision:"), std::string::npos);
  EXPECT_NE(text.find("max_steps = 6"), std::string::npos);
}

TEST_F(DemoPipeline, TrainedAndRandomInitEmbeddingsDiffer) {
  ASSERT_EQ(rc_, 0) << log_;
  stdfs::path out(out_);
  auto trained = eval::read_embeddings(out / "embeddings-trained.h5");
  auto random = eval::read_embeddings(out / "embeddings-random-init.h5");
  EXPECT_EQ(trained.N, random.N);
  EXPECT_EQ(trained.ids, random.ids);
  // Trained and random-init embeddings differ (training changed the weights).
  double diff = 0;
  for (size_t i = 0; i < trained.X.size(); ++i) diff += std::abs(trained.X[i] - random.X[i]);
  EXPECT_GT(diff, 1e-3);
}

// The report: SSL (trained), random-init, raw-pixels and histogram encoders,
// each with a row for every modality including MRI and the whole cross-modal
// matrix, every row with its chance level and 95 % interval; MRI marked unseen
// because configs/demo.toml does not train on it; a verdict per row.
TEST_F(DemoPipeline, ReportComparesSslWithItsBaselinesWithChanceIntervalsAndUnseenMri) {
  ASSERT_EQ(rc_, 0) << log_;
  stdfs::path out(out_);
  const auto report = read_json(out / "report.json");
  const std::vector<std::string> modalities = {"xray", "ultrasound", "endoscopy", "ct", "mri"};
  EXPECT_EQ(report.at("format_version"), 2);
  const auto& encoders = report.at("encoders");
  const std::vector<std::string> names = {"trained", "random-init", "raw-pixels", "histogram"};
  ASSERT_EQ(encoders.size(), names.size()) << report.dump(1);
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(encoders.contains(name));
    const auto& col = encoders.at(name);
    // The embeddings of every encoder of the comparison are kept beside the report.
    EXPECT_TRUE(stdfs::exists(out / ("embeddings-" + name + ".h5")));
    for (const auto& m : modalities) {
      SCOPED_TRACE(m);
      ASSERT_TRUE(col.at("per_modality").contains(m));
      const auto& row = col.at("per_modality").at(m);
      EXPECT_GT(row.at("queries").get<int>(), 0);
      for (const char* key : {"recall@1", "recall@5", "recall@10", "map@10"}) {
        const double v = row.at(key).get<double>();
        EXPECT_GE(v, 0.0) << key;
        EXPECT_LE(v, 1.0) << key;
      }
      for (const char* key : {"recall@1", "recall@5", "recall@10"}) {
        const double v = row.at(key).get<double>();
        const auto ci = row.at("ci95").at(key);
        EXPECT_LE(ci.at(0).get<double>(), v + 1e-12) << key;
        EXPECT_GE(ci.at(1).get<double>(), v - 1e-12) << key;
        const double chance = row.at("chance").at(key).get<double>();
        EXPECT_GT(chance, 0.0) << key;
        EXPECT_LE(chance, 1.0) << key;
      }
      // Per label: the demo's classes, one label per sample, so the labels' queries add up
      // to the row's.
      int64_t label_queries = 0;
      for (const auto& [label, l] : row.at("per_label").items()) {
        label_queries += l.at("queries").get<int64_t>();
        EXPECT_TRUE(l.at("ci95").contains("recall@1")) << label;
        EXPECT_GT(l.at("chance").at("recall@1").get<double>(), 0.0) << label;
      }
      EXPECT_EQ(label_queries, row.at("queries").get<int64_t>());
      // Cross-modal matrix: every ordered pair (all modalities share the classes).
      for (const auto& g : modalities) {
        if (g == m) continue;
        ASSERT_TRUE(col.at("cross_modal").contains(m + "->" + g)) << m << "->" << g;
        const auto& pair = col.at("cross_modal").at(m + "->" + g);
        EXPECT_GT(pair.at("queries").get<int>(), 0);
        EXPECT_TRUE(pair.at("ci95").contains("recall@5"));
        EXPECT_TRUE(pair.at("chance").contains("recall@5"));
      }
    }
  }
  const auto& trained = encoders.at("trained");
  EXPECT_EQ(trained.at("cross_modal").size(), 20u);
  // The trained encoder is SimDINO's EMA teacher (the default for a checkpoint with one).
  EXPECT_EQ(trained.at("embeddings").at("weights"), "teacher");
  EXPECT_EQ(encoders.at("random-init").at("embeddings").at("weights"), "student");
  EXPECT_EQ(encoders.at("histogram").at("embeddings").at("encoder"), "histogram");
  // Unseen comes from the checkpoint's train.modalities, recorded in the embeddings.
  EXPECT_EQ(trained.at("embeddings").at("train_modalities"),
            json::array({"xray", "ultrasound", "endoscopy", "ct"}));
  EXPECT_EQ(report.at("unseen_modalities"), json::array({"mri"}));
  EXPECT_EQ(encoders.at("raw-pixels").at("unseen_modalities"), json::array());
  EXPECT_EQ(encoders.at("raw-pixels").at("embeddings").at("train_modalities"), json::array());
  // The verdict: one entry per evaluated row, against the three baselines.
  const auto& verdict = report.at("verdict");
  EXPECT_EQ(verdict.at("k"), 1);
  ASSERT_TRUE(verdict.at("rows").contains("mri"));
  for (const char* b : {"random-init", "raw-pixels", "histogram"})
    EXPECT_TRUE(verdict.at("rows").at("xray").at("beats").contains(b)) << b;
  EXPECT_NE(log_.find("Did the trained encoder beat chance and each baseline?"), std::string::npos)
      << log_;
  EXPECT_NE(log_.find("mri (unseen) R@1: trained"), std::string::npos) << log_;
  // The shortcut probes' own check: the three baselines, each checked in every evaluated row.
  const auto& probes = verdict.at("probes");
  ASSERT_EQ(probes.size(), 3u) << probes.dump();
  for (const char* b : {"random-init", "raw-pixels", "histogram"})
    EXPECT_EQ(probes.at(b).at("checked").size(), verdict.at("rows").size()) << b;
  EXPECT_NE(log_.find("Do the shortcut probes stay at chance?"), std::string::npos) << log_;
  EXPECT_NE(log_.find("  histogram R@1: "), std::string::npos) << log_;

  std::ifstream md_in(out / "report.md");
  const std::string md((std::istreambuf_iterator<char>(md_in)), std::istreambuf_iterator<char>());
  EXPECT_NE(md.find("| metric | trained | random-init | raw-pixels | histogram | chance |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("### mri (unseen)"), std::string::npos) << md;
  EXPECT_EQ(md.find("### ct (unseen)"), std::string::npos) << md;
  for (const auto& m : modalities) EXPECT_NE(md.find("### " + m), std::string::npos) << m;
  EXPECT_NE(md.find("### cross-modal recall@1"), std::string::npos) << md;
  EXPECT_NE(md.find("unseen (evaluated, never trained on): mri"), std::string::npos) << md;
  EXPECT_NE(md.find("- raw-pixels R@1: "), std::string::npos) << md;
  EXPECT_NE(md.find("## recall@1 per label"), std::string::npos) << md;
  EXPECT_NE(md.find("| mri (unseen) / "), std::string::npos) << md;

  std::ifstream csv_in(out / "report.csv");
  const std::string csv((std::istreambuf_iterator<char>(csv_in)), std::istreambuf_iterator<char>());
  for (const auto& enc : names)
    for (const auto& m : modalities)
      EXPECT_NE(csv.find("\n" + enc + ",per_modality," + m + "," + m + ","), std::string::npos)
          << enc << " " << m;
}

// --seeds: the whole demo once per seed in OUT/seed-S (data and weights seeded
// with S), summarised over the seeds in OUT/seeds.json and OUT/seeds.md. With
// the whitening readout, which makes the demo embed the train split too.
TEST(DemoSeeds, EachSeedRunsInItsFolderAndTheSummaryHasEveryEncoder) {
  testing::TempDir dir("demo-seeds");
  const auto out = dir.path() / "demo";
  std::string log;
  const std::string cmd = testing::m3ret_binary().string() + " demo --out " + out.string() +
                          " --seeds 3,4 --set 'synth.modalities=[\"xray\",\"ct\"]'"
                          " --set 'train.modalities=[\"xray\"]'"
                          " --set synth.patients_per_class=3 --set synth.samples_per_patient=2"
                          " --set synth.test_fraction=0.5 --set train.max_steps=2"
                          " --set train.warmup_steps=1 --set train.checkpoint_every=0"
                          " --set train.global_batch_size=8 --set eval.whiten_dims=2";
  ASSERT_EQ(testing::run_command(cmd, &log), 0) << log;
  EXPECT_NE(log.find("readout: PCA whitening to 2 dimensions"), std::string::npos) << log;
  for (int seed : {3, 4}) {
    const auto sub = out / ("seed-" + std::to_string(seed));
    ASSERT_TRUE(stdfs::exists(sub / "report.json")) << sub;
    std::ifstream cfg(sub / "config.toml");
    const std::string text((std::istreambuf_iterator<char>(cfg)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("seed = " + std::to_string(seed)), std::string::npos) << text;
  }
  // Every encoder whitened on its own train rows, and its test rows evaluated.
  const auto white = read_json(out / "seed-3" / "report.json");
  EXPECT_EQ(white.at("whiten_dims"), 2);
  EXPECT_EQ(white.at("split"), "test");
  for (const char* enc : {"trained", "random-init", "raw-pixels", "histogram"}) {
    const auto& fit = white.at("encoders").at(enc).at("whitening").at("xray");
    EXPECT_EQ(fit.at("fitted_on"), "xray") << enc;
    EXPECT_GT(fit.at("rows").get<int64_t>(), 2) << enc;
  }
  // Different seeds, different data.
  const auto a = eval::read_embeddings(out / "seed-3" / "embeddings-raw-pixels.h5");
  const auto b = eval::read_embeddings(out / "seed-4" / "embeddings-raw-pixels.h5");
  ASSERT_EQ(a.X.size(), b.X.size());
  EXPECT_NE(a.X, b.X);
  const auto summary = read_json(out / "seeds.json");
  EXPECT_EQ(summary.at("seeds"), 2);
  for (const char* enc : {"trained", "random-init", "raw-pixels", "histogram"}) {
    const auto& r = summary.at("encoders").at(enc).at("per_modality").at("xray").at("recall@1");
    EXPECT_EQ(r.at("values").size(), 2u) << enc;
    EXPECT_GE(r.at("max").get<double>(), r.at("mean").get<double>()) << enc;
  }
  // The verdict counts and the per-label figures agree with the seeds' own reports.
  const auto& counts = summary.at("verdicts").at("recall@1").at("xray");
  EXPECT_EQ(counts.at("evaluated"), 2);
  int64_t beats_chance = 0, beats_all = 0;
  const auto& per_label =
      summary.at("encoders").at("trained").at("per_modality").at("xray").at("per_label");
  EXPECT_FALSE(per_label.empty());
  for (size_t i = 0; i < 2; ++i) {
    const auto report = read_json(out / (i == 0 ? "seed-3" : "seed-4") / "report.json");
    const auto& v = report.at("verdict").at("rows").at("xray");
    beats_chance += v.at("beats_chance").get<bool>();
    bool all = v.at("beats_chance").get<bool>();
    for (const auto& [rival, beaten] : v.at("beats").items()) all = all && beaten.get<bool>();
    beats_all += all;
    const auto& labels =
        report.at("encoders").at("trained").at("per_modality").at("xray").at("per_label");
    for (const auto& [label, lm] : labels.items())
      EXPECT_DOUBLE_EQ(per_label.at(label).at("recall@1").at("values").at(i).get<double>(),
                       lm.at("recall@1").get<double>())
          << label;
  }
  EXPECT_EQ(counts.at("beats_chance"), beats_chance);
  EXPECT_EQ(counts.at("beats_all"), beats_all);
  std::ifstream md_in(out / "seeds.md");
  const std::string md((std::istreambuf_iterator<char>(md_in)), std::istreambuf_iterator<char>());
  EXPECT_NE(md.find("## Verdict over seeds"), std::string::npos) << md;
  EXPECT_NE(md.find("## recall@1 per label (mean ± sd over seeds)"), std::string::npos) << md;
  EXPECT_NE(log.find("seed 3:"), std::string::npos) << log;
  EXPECT_NE(log.find("seed 4:"), std::string::npos) << log;
}

}  // namespace
}  // namespace m3ret
