// End to end through the m3ret binary on a tiny generated dataset and a
// 2-step checkpoint: `eval --checkpoint` (baselines, CSV/Markdown, history),
// `embed`, `index build` (exact and HNSW) and `search` on a PNG, a NIfTI/DICOM
// volume and a video, each of which must find itself first.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "eval/embeddings_file.h"
#include "sharding/shard_set.h"
#include "test_util.h"
#include "model/export.h"

namespace m3ret::eval {
namespace {

namespace stdfs = std::filesystem;
using nlohmann::json;

class SearchCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new m3ret::testing::TempDir("eval-cli");
    const std::string conf =
        " --config " + (m3ret::testing::source_dir() / "configs/demo.toml").string();
    const std::string small =
        " --set 'synth.modalities=[\"xray\", \"ct\", \"endoscopy\"]' --set "
        "synth.patients_per_class=2"
        " --set synth.samples_per_patient=2 --set train.max_steps=2 --set train.warmup_steps=1"
        " --set train.checkpoint_every=2 --set train.global_batch_size=4"
        " --set 'train.modalities=[\"xray\", \"ct\"]'";  // endoscopy: evaluated, never trained on
    const std::string d = dir_->path().string();
    for (const std::string& step :
         {" synth --out " + d + "/data",
          " shard --manifest " + d + "/data/manifest.csv --out " + d + "/shards",
          " train --shards " + d + "/shards --run-dir " + d + "/run",
          " train --shards " + d + "/shards --run-dir " + d + "/run-hmlp --set model.stem=hmlp"}) {
      std::string out;
      const int rc = m3ret::testing::run_command(bin() + step + conf + small + " 2>&1", &out);
      log_ += out;
      if (rc != 0) {
        ok_ = false;
        log_ += "\nFAILED: " + step;
        return;
      }
    }
    ok_ = true;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string bin() { return m3ret::testing::m3ret_binary().string(); }
  static stdfs::path dir() { return dir_->path(); }

  static m3ret::testing::TempDir* dir_;
  static bool ok_;
  static std::string log_;
};
m3ret::testing::TempDir* SearchCli::dir_ = nullptr;
bool SearchCli::ok_ = false;
std::string SearchCli::log_;

TEST_F(SearchCli, EvalFromCheckpointWritesReportBaselinesAndHistory) {
  ASSERT_TRUE(ok_) << log_;
  std::string out;
  const std::string cmd = bin() + " eval --checkpoint " + (dir() / "run").string() + " --shards " +
                          (dir() / "shards").string() + " --out " +
                          (dir() / "eval/report.json").string() +
                          " --baselines random-init,raw-pixels --set 'eval.split=\"\"' 2>&1";
  ASSERT_EQ(m3ret::testing::run_command(cmd, &out), 0) << out;
  const auto j = json::parse(fs::read_file(dir() / "eval/report.json"));
  const auto& enc = j.at("encoders").at("trained");  // report format 2
  const auto& baselines = j.at("encoders");
  for (const char* m : {"xray", "ct", "endoscopy"}) {
    SCOPED_TRACE(m);
    const auto& row = enc.at("per_modality").at(m);
    for (const char* key :
         {"recall@1", "recall@5", "recall@10", "precision@10", "map@10", "queries"})
      EXPECT_TRUE(row.contains(key)) << key;
    EXPECT_GT(row.at("queries").get<int>(), 0);
    EXPECT_TRUE(baselines.at("random-init").at("per_modality").contains(m));
    EXPECT_TRUE(baselines.at("raw-pixels").at("per_modality").contains(m));
  }
  EXPECT_TRUE(enc.at("cross_modal").contains("ct->xray"));
  EXPECT_EQ(enc.at("embeddings").at("step"), 2);
  // Unseen = evaluated but not in the checkpoint's train.modalities (read from the run).
  EXPECT_EQ(enc.at("embeddings").at("train_modalities"), json::array({"xray", "ct"}));
  EXPECT_EQ(j.at("unseen_modalities"), json::array({"endoscopy"}));
  EXPECT_EQ(baselines.at("raw-pixels").at("unseen_modalities"), json::array());
  EXPECT_NE(out.find("endoscopy (unseen)"), std::string::npos) << out;
  EXPECT_EQ(out.find("ct (unseen)"), std::string::npos) << out;
  EXPECT_NE(fs::read_file(dir() / "eval/report.md").find("### endoscopy (unseen)"),
            std::string::npos);
  EXPECT_TRUE(stdfs::exists(dir() / "eval/report.md"));
  const std::string csv = fs::read_file(dir() / "eval/report.csv");
  EXPECT_NE(csv.find("\nraw-pixels,cross_modal,ct,xray,"), std::string::npos) << csv;
  EXPECT_NE(out.find("random-init"), std::string::npos) << out;
  // The console ends with the verdict and the shortcut probes' check, as report.md does.
  EXPECT_NE(out.find("Verdict (recall@1: is the 95 % interval of trained above chance and above "
                     "each other encoder?)\n  xray R@1: trained "),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("Do the shortcut probes stay at chance?"), std::string::npos) << out;
  EXPECT_NE(out.find("\n  raw-pixels R@1: "), std::string::npos) << out;
  EXPECT_EQ(j.at("verdict").at("probes").size(), 2u);

  // One history line per evaluation, in the checkpoint's run folder.
  ASSERT_EQ(m3ret::testing::run_command(cmd, &out), 0) << out;
  std::ifstream history(dir() / "run/eval/history.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(history, line)) {
    ++lines;
    const auto h = json::parse(line);
    EXPECT_EQ(h.at("step"), 2);
    EXPECT_NE(h.at("checkpoint").get<std::string>().find("step-000000002"), std::string::npos);
    EXPECT_FALSE(h.at("time").get<std::string>().empty());
    EXPECT_EQ(h.at("per_modality"), enc.at("per_modality"));
    EXPECT_EQ(h.at("cross_modal"), enc.at("cross_modal"));
    EXPECT_EQ(h.at("unseen_modalities"), json::array({"endoscopy"}));
  }
  EXPECT_EQ(lines, 2);
}

TEST_F(SearchCli, IndexBuildAndSearchFindTheQueryItself) {
  ASSERT_TRUE(ok_) << log_;
  std::string out;
  const auto emb = dir() / "emb.h5";
  ASSERT_EQ(m3ret::testing::run_command(bin() + " embed --checkpoint " + (dir() / "run").string() +
                                            " --shards " + (dir() / "shards").string() + " --out " +
                                            emb.string() + " 2>&1",
                                        &out),
            0)
      << out;
  const EmbeddingSet set = read_embeddings(emb);
  EXPECT_EQ(set.attrs.train_modalities, (std::vector<std::string>{"xray", "ct"}));
  for (const std::string type : {"exact", "hnsw"}) {
    SCOPED_TRACE(type);
    const auto index = dir() / ("index-" + type);
    ASSERT_EQ(
        m3ret::testing::run_command(bin() + " index build --embeddings " + emb.string() +
                                        " --out " + index.string() + " --type " + type + " 2>&1",
                                    &out),
        0)
        << out;
    EXPECT_NE(out.find("over " + std::to_string(set.N) + " embeddings"), std::string::npos) << out;
    // One query per modality: a PNG, a volume (NIfTI file or DICOM folder), a video.
    for (const std::string modality : {"xray", "ct", "endoscopy"}) {
      SCOPED_TRACE(modality);
      int64_t i = 0;
      while (i < set.N && set.modality[i] != modality) ++i;
      ASSERT_LT(i, set.N);
      const std::string query = set.sources[i];
      ASSERT_TRUE(stdfs::exists(query)) << query;
      ASSERT_EQ(m3ret::testing::run_command(bin() + " search --index " + index.string() +
                                                " --checkpoint " + (dir() / "run").string() +
                                                " --query '" + query + "' --modality " + modality +
                                                " --k 5 --json 2>/dev/null",
                                            &out),
                0)
          << out;
      const auto j = json::parse(out);
      ASSERT_EQ(j.at("results").size(), 5u) << out;
      const auto& top = j.at("results")[0];
      EXPECT_EQ(top.at("id"), set.ids[i]) << out;
      EXPECT_NEAR(top.at("score").get<double>(), 1.0, 1e-3) << out;
      EXPECT_EQ(top.at("source"), query);
      EXPECT_EQ(top.at("labels").get<std::vector<std::string>>(), set.labels[i]);
      EXPECT_EQ(top.at("modality"), modality);
    }
  }
  // Table output, and errors that name what is wrong.
  const std::string query = set.sources[0];
  ASSERT_EQ(
      m3ret::testing::run_command(bin() + " search --index " + (dir() / "index-exact").string() +
                                      " --checkpoint " + (dir() / "run").string() + " --query '" +
                                      query + "' --modality " + set.modality[0] + " 2>&1",
                                  &out),
      0)
      << out;
  EXPECT_NE(out.find("rank"), std::string::npos) << out;
  EXPECT_NE(out.find(set.ids[0]), std::string::npos) << out;
  EXPECT_NE(m3ret::testing::run_command(bin() + " search --index " + (dir() / "nope").string() +
                                            " --checkpoint " + (dir() / "run").string() +
                                            " --query '" + query + "' 2>&1",
                                        &out),
            0);
  EXPECT_NE(out.find("nope: no such folder"), std::string::npos) << out;
  EXPECT_NE(m3ret::testing::run_command(
                bin() + " search --index " + (dir() / "index-exact").string() + " --checkpoint " +
                    (dir() / "run").string() + " --query '" + query + "' 2>&1",
                &out),
            0);
  EXPECT_NE(out.find("give --modality"), std::string::npos) << out;
  EXPECT_NE(
      m3ret::testing::run_command(bin() + " index build --embeddings " + emb.string() + " --out " +
                                      (dir() / "bad").string() + " --type annoy 2>&1",
                                  &out),
      0);
  EXPECT_NE(out.find("unknown type 'annoy'"), std::string::npos) << out;
  EXPECT_FALSE(stdfs::exists(dir() / "bad"));
}

// The Python interpreter with torch, timm and safetensors: python/.venv (made
// by `bash setup.sh`), $M3RET_PYTHON or the system's; "" if none.
std::string python_for_export() {
  const auto venv = m3ret::testing::source_dir() / "python/.venv/bin/python";
  if (stdfs::exists(venv) &&
      m3ret::testing::run_command(venv.string() +
                                  " -c 'import torch, timm, safetensors' 2>/dev/null") == 0)
    return venv.string();
  return m3ret::testing::python_with("torch, timm, safetensors");
}

// `m3ret export --weights auto` of the run in `run_name` read by
// python/m3ret_encoder.py, as a plain torch module (images, volumes, videos)
// and, with the linear stem, as a timm VisionTransformer (images), gives the
// embeddings `m3ret embed` wrote for the same shard pixels.
void check_python_rebuild(const std::string& py, const stdfs::path& dir, const std::string& bin,
                          const std::string& run_name, bool timm) {
  const auto emb = dir / ("emb-python-" + run_name + ".h5");
  const auto weights = dir / ("encoder-" + run_name + ".safetensors");
  std::string out;
  const std::string run = (dir / run_name).string(), shards = (dir / "shards").string();
  ASSERT_EQ(m3ret::testing::run_command(bin + " embed --checkpoint " + run + " --shards " + shards +
                                            " --out " + emb.string() + " 2>&1",
                                        &out),
            0)
      << out;
  ASSERT_EQ(m3ret::testing::run_command(bin + " export --weights auto --checkpoint " + run +
                                            " --out " + weights.string() + " 2>&1",
                                        &out),
            0)
      << out;
  const EmbeddingSet set = read_embeddings(emb);
  std::map<std::string, int64_t> row;
  for (int64_t i = 0; i < set.N; ++i) row[set.ids[i]] = i;

  // Up to 4 samples per modality, as stored in the shards.
  const auto shard_set = sharding::ShardSet::open(dir / "shards");
  trainer::NamedTensors inputs;
  std::map<std::string, std::vector<std::string>> ids;
  for (const std::string m : {"xray", "ct", "endoscopy"}) {
    const auto& info = shard_set->info(m);
    std::vector<torch::Tensor> xs;
    for (int64_t i = 0; i < info.count && ids[m].size() < 4; ++i) {
      if (!row.count(shard_set->meta(m, i).id)) continue;  // not in the embedded split
      auto x = torch::empty({1, info.C, info.T, info.H, info.W}, torch::kUInt8);
      shard_set->read_pixels(m, i, x.data_ptr<uint8_t>());
      xs.push_back(x);
      ids[m].push_back(shard_set->meta(m, i).id);
    }
    ASSERT_FALSE(xs.empty()) << m;
    inputs.emplace_back("inputs." + m, torch::cat(xs));
  }
  trainer::write_safetensors(dir / "inputs.safetensors", inputs);
  const auto script = m3ret::testing::source_dir() / "python/m3ret_encoder.py";
  ASSERT_EQ(m3ret::testing::run_command(py + " " + script.string() + " embed " + weights.string() +
                                            " " + (dir / "inputs.safetensors").string() + " " +
                                            (dir / "py.safetensors").string() + " 2>&1",
                                        &out),
            0)
      << out;
  std::map<std::string, torch::Tensor> got;
  for (auto& [name, t] : trainer::read_safetensors(dir / "py.safetensors")) got[name] = t;
  EXPECT_EQ(got.count("timm.xray"), timm ? 1u : 0u);  // an image: through timm as well
  EXPECT_FALSE(got.count("timm.ct"));                 // volumes and clips: the module only
  double worst = 0;
  for (const auto& [name, z] : got) {
    const std::string m = name.substr(name.find('.') + 1);
    ASSERT_EQ(z.size(0), static_cast<int64_t>(ids[m].size())) << name;
    ASSERT_EQ(z.size(1), set.D) << name;
    double diff = 0;
    for (int64_t b = 0; b < z.size(0); ++b) {
      const float* ref = set.row(row.at(ids[m][b]));
      for (int64_t j = 0; j < set.D; ++j)
        diff = std::max(diff, std::abs(double(z[b][j].item<float>()) - double(ref[j])));
    }
    std::cout << "max |python - m3ret embed| of " << name << " (" << z.size(0) << " x " << z.size(1)
              << "): " << diff << "\n";
    worst = std::max(worst, diff);
  }
  ::testing::Test::RecordProperty("max_abs_difference_" + run_name, std::to_string(worst));
  EXPECT_LT(worst, 1e-4);  // unit vectors in float32
}

TEST_F(SearchCli, PythonRebuildsTheExportedEncoderAsTimmAndTorchLikeEmbed) {
  ASSERT_TRUE(ok_) << log_;
  const std::string py = python_for_export();
  if (py.empty()) GTEST_SKIP() << "no Python with torch, timm and safetensors: run `bash setup.sh`";
  check_python_rebuild(py, dir(), bin(), "run", /*timm=*/true);
}

// The same with the hMLP stem (model.stem = "hmlp"): the torch module rebuilds
// it; timm's VisionTransformer has no such stem, so the reader does not offer it.
TEST_F(SearchCli, PythonRebuildsAnExportedHmlpStemEncoderLikeEmbed) {
  ASSERT_TRUE(ok_) << log_;
  const std::string py = python_for_export();
  if (py.empty()) GTEST_SKIP() << "no Python with torch, timm and safetensors: run `bash setup.sh`";
  check_python_rebuild(py, dir(), bin(), "run-hmlp", /*timm=*/false);
  std::string out;
  const auto python_dir = m3ret::testing::source_dir() / "python";
  EXPECT_NE(m3ret::testing::run_command(
                py + " -c \"import sys; sys.path.insert(0, '" + python_dir.string() +
                    "'); import m3ret_encoder; m3ret_encoder.load_timm(sys.argv[1])\" " +
                    (dir() / "encoder-run-hmlp.safetensors").string() + " 2>&1",
                &out),
            0);
  EXPECT_NE(out.find("stem_type 'hmlp'"), std::string::npos) << out;
}

// Through the binary: a baseline on other samples is refused with one line;
// constant embeddings are evaluated with a warning on the console.
TEST(EvalCli, BaselineOnOtherSamplesIsRefused) {
  m3ret::testing::TempDir dir("eval-cli-baseline");
  EmbeddingSet a;
  a.D = 2;
  for (int i = 0; i < 6; ++i) {
    a.ids.push_back("s" + std::to_string(i));
    a.modality.push_back("ct");
    a.groups.push_back("p" + std::to_string(i));
    a.splits.push_back("test");
    a.labels.push_back({i % 2 ? "A" : "B"});
    a.X.insert(a.X.end(), {1.0f, 0.5f});  // every embedding the same vector
    ++a.N;
  }
  write_embeddings(dir / "a.h5", a);
  EmbeddingSet b = a;
  b.ids[4] = "t4";
  b.ids[5] = "t5";
  write_embeddings(dir / "b.h5", b);
  const std::string bin = m3ret::testing::m3ret_binary().string();
  const std::string d = dir.path().string();
  std::string out;
  int rc = m3ret::testing::run_command(bin + " eval --embeddings " + d + "/a.h5 --baseline " + d +
                                           "/b.h5 --out " + d + "/r.json 2>&1",
                                       &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("eval: baseline " + d +
                     "/b.h5 does not cover the same samples: it lacks 2 "
                     "(first: s4, s5) of the 6 samples of " +
                     d + "/a.h5"),
            std::string::npos)
      << out;
  EXPECT_FALSE(stdfs::exists(dir / "r.json"));

  rc = m3ret::testing::run_command(
      bin + " eval --embeddings " + d + "/a.h5 --out " + d + "/r.json 2>&1", &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("all 6 embeddings are the same vector (constant)"), std::string::npos) << out;
  const auto report = json::parse(fs::read_file(dir / "r.json"));
  EXPECT_EQ(report.at("encoders").at("encoder").at("warnings").size(), 1u);
}

// `eval --summarize`: the reports of separate runs (one per seed) summarised as
// `demo --seeds` does, each value the one in its report; bad input refused by name.
TEST(EvalCli, SummarizeReportsOfSeveralRuns) {
  m3ret::testing::TempDir dir("eval-cli-summarize");
  const std::string bin = m3ret::testing::m3ret_binary().string();
  const std::string d = dir.path().string();
  std::string out;
  for (int seed : {1, 2}) {
    EmbeddingSet e;
    e.D = 3;
    for (int i = 0; i < 16; ++i) {
      e.ids.push_back("s" + std::to_string(i));
      e.modality.push_back(i < 8 ? "xray" : "ct");
      e.groups.push_back("p" + std::to_string(i));
      e.splits.push_back("test");
      e.labels.push_back({i % 2 ? "A" : "B"});
      // The class along the first axis, with seed-dependent noise on the others.
      e.X.insert(e.X.end(),
                 {i % 2 ? 1.0f : -1.0f, std::sin(1.7f * i * seed), std::cos(0.9f * i + seed)});
      ++e.N;
    }
    write_embeddings(dir / ("e" + std::to_string(seed) + ".h5"), e);
    EmbeddingSet noise = e;
    for (size_t i = 0; i < noise.X.size(); ++i) noise.X[i] = std::sin(2.3f * i + seed);
    // The baseline is named by its file name, the same in every run's folder.
    stdfs::create_directories(dir / ("run" + std::to_string(seed)));
    write_embeddings(dir / ("run" + std::to_string(seed)) / "noise.h5", noise);
    ASSERT_EQ(m3ret::testing::run_command(bin + " eval --embeddings " + d + "/e" +
                                              std::to_string(seed) + ".h5 --baseline " + d +
                                              "/run" + std::to_string(seed) + "/noise.h5 --out " +
                                              d + "/r" + std::to_string(seed) + ".json 2>&1",
                                          &out),
              0)
        << out;
  }
  ASSERT_EQ(m3ret::testing::run_command(bin + " eval --summarize " + d + "/r1.json " + d +
                                            "/r2.json --out " + d + "/s.json 2>&1",
                                        &out),
            0)
      << out;
  const auto s = json::parse(fs::read_file(dir / "s.json"));
  EXPECT_EQ(s.at("seeds"), 2);
  EXPECT_EQ(s.at("reports"), json::array({d + "/r1.json", d + "/r2.json"}));
  for (int seed : {1, 2}) {
    const auto r = json::parse(fs::read_file(dir / ("r" + std::to_string(seed) + ".json")));
    for (const char* row : {"xray", "ct"}) {
      const auto& mine = r.at("encoders").at("encoder").at("per_modality").at(row);
      const auto& summary = s.at("encoders").at("encoder").at("per_modality").at(row);
      EXPECT_DOUBLE_EQ(summary.at("recall@1").at("values").at(seed - 1).get<double>(),
                       mine.at("recall@1").get<double>())
          << row;
      EXPECT_DOUBLE_EQ(
          summary.at("per_label").at("A").at("recall@1").at("values").at(seed - 1).get<double>(),
          mine.at("per_label").at("A").at("recall@1").get<double>())
          << row;
    }
  }
  EXPECT_EQ(s.at("verdicts").at("recall@1").at("xray").at("evaluated"), 2);
  const std::string md = fs::read_file(dir / "s.md");
  EXPECT_NE(md.find("# Retrieval over 2 seeds"), std::string::npos) << md;
  EXPECT_NE(out.find("## Verdict over seeds"), std::string::npos) << out;

  // Another layout (no baseline), a file that is not JSON, and --out over an input: refused,
  // naming the file; the input is kept.
  ASSERT_EQ(m3ret::testing::run_command(
                bin + " eval --embeddings " + d + "/e1.h5 --out " + d + "/alone.json 2>&1", &out),
            0)
      << out;
  EXPECT_NE(m3ret::testing::run_command(bin + " eval --summarize " + d + "/r1.json " + d +
                                            "/alone.json --out " + d + "/t.json 2>&1",
                                        &out),
            0);
  EXPECT_NE(out.find("report " + d + "/alone.json has other encoders or rows than report " + d +
                     "/r1.json: no 'noise per_modality xray'"),
            std::string::npos)
      << out;
  fs::write_atomic(dir / "broken.json", "{\"encoders\": ");
  EXPECT_NE(m3ret::testing::run_command(bin + " eval --summarize " + d + "/r1.json " + d +
                                            "/broken.json --out " + d + "/t.json 2>&1",
                                        &out),
            0);
  EXPECT_NE(out.find(d + "/broken.json: not valid JSON"), std::string::npos) << out;
  EXPECT_FALSE(stdfs::exists(dir / "t.json"));
  const std::string r2 = fs::read_file(dir / "r2.json");
  EXPECT_NE(m3ret::testing::run_command(bin + " eval --summarize " + d + "/r1.json " + d +
                                            "/r2.json --out " + d + "/r2.json 2>&1",
                                        &out),
            0);
  EXPECT_NE(out.find("--out " + d + "/r2.json is one of the reports summarised"), std::string::npos)
      << out;
  EXPECT_EQ(fs::read_file(dir / "r2.json"), r2);
}

}  // namespace
}  // namespace m3ret::eval
