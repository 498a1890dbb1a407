// m3ret-node, the compute-node binary: it links no image, video or DICOM library, and trains,
// embeds and evaluates shards made by the full m3ret exactly as the full binary does.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "eval/embeddings_file.h"
#include "test_util.h"

namespace m3ret {
namespace {

namespace stdfs = std::filesystem;

stdfs::path node_binary() { return testing::m3ret_binary().parent_path() / "m3ret-node"; }

// The shared libraries a binary names (its ELF NEEDED entries), one per line.
std::string needed_libraries(const stdfs::path& binary) {
  std::string out;
  EXPECT_EQ(testing::run_command("readelf -d " + binary.string() + " | grep NEEDED", &out), 0)
      << binary;
  return out;
}

// The `loss` of every step in RUN/metrics.jsonl, as written.
std::vector<std::string> losses(const stdfs::path& run) {
  std::ifstream in(run / "metrics.jsonl");
  std::vector<std::string> out;
  const std::regex loss("\"loss\":([^,}]+)");
  std::smatch m;
  for (std::string line; std::getline(in, line);)
    if (std::regex_search(line, m, loss)) out.push_back(m[1]);
  return out;
}

TEST(NodeBinary, LinksNoImageVideoOrDicomLibrary) {
  const std::regex readers("ITK|itk|gdcm|avcodec|avformat|swscale|png|jpeg");
  const std::string full = needed_libraries(testing::m3ret_binary());
  // The pattern finds the readers where they are: the check can fail.
  ASSERT_TRUE(std::regex_search(full, readers)) << full;
  const std::string node = needed_libraries(node_binary());
  ASSERT_NE(node.find("hdf5"), std::string::npos) << node;
  std::smatch m;
  EXPECT_FALSE(std::regex_search(node, m, readers)) << "m3ret-node links " << m.str() << ":\n"
                                                    << node;
}

TEST(NodeBinary, HasTheComputeVerbsAndSaysWhereTheOthersAre) {
  std::string out;
  ASSERT_EQ(testing::run_command(node_binary().string() + " --help 2>&1", &out), 0) << out;
  for (const char* verb : {"train", "embed", "eval", "index", "export", "model", "config"})
    EXPECT_NE(out.find(std::string("\n  ") + verb + " "), std::string::npos) << verb << "\n" << out;
  for (const char* verb : {"synth", "import", "shard", "search", "demo", "orchestrate"})
    EXPECT_EQ(out.find(std::string("\n  ") + verb + " "), std::string::npos) << verb << "\n" << out;
  EXPECT_NE(out.find("full `m3ret` binary"), std::string::npos) << out;
  EXPECT_EQ(testing::run_command(node_binary().string() + " shard --manifest m.csv 2>&1", &out), 2)
      << out;
  EXPECT_NE(out.find("'shard' is a verb of the full m3ret binary"), std::string::npos) << out;
}

// Shards from the full binary; the same deterministic training, embedding and evaluation by
// both binaries.
TEST(NodeBinary, TrainsEmbedsAndEvaluatesAsTheFullBinaryDoes) {
  testing::TempDir dir("node-binary");
  const std::string cfg = " --config " + (testing::source_dir() / "configs/demo.toml").string() +
                          " --set synth.patients_per_class=2 --set synth.samples_per_patient=2"
                          " --set 'synth.modalities=[\"xray\"]' --set preprocess.image_size=32";
  const std::string train_sets =
      " --set train.objective=mae --set train.max_steps=3 --set train.checkpoint_every=3"
      " --set train.global_batch_size=4 --set train.warmup_steps=1"
      " --set train.deterministic=true --set loader.workers=1"
      " --set 'train.modalities=[\"xray\"]'";
  const std::string full = testing::m3ret_binary().string(), node = node_binary().string();
  std::string log;
  ASSERT_EQ(
      testing::run_command(full + " synth --out " + (dir / "data").string() + cfg + " 2>&1", &log),
      0)
      << log;
  ASSERT_EQ(
      testing::run_command(full + " shard --manifest " + (dir / "data/manifest.csv").string() +
                               " --out " + (dir / "shards").string() + cfg + " 2>&1",
                           &log),
      0)
      << log;
  for (const auto& [binary, name] : {std::pair{full, "full"}, std::pair{node, "node"}}) {
    const stdfs::path run = dir / ("run-" + std::string(name));
    ASSERT_EQ(testing::run_command(binary + " train --shards " + (dir / "shards").string() +
                                       " --run-dir " + run.string() + cfg + train_sets + " 2>&1",
                                   &log),
              0)
        << name << "\n"
        << log;
    ASSERT_EQ(testing::run_command(binary + " embed --checkpoint " + run.string() + " --shards " +
                                       (dir / "shards").string() + " --out " +
                                       (run / "emb.h5").string() + cfg + " 2>&1",
                                   &log),
              0)
        << name << "\n"
        << log;
    ASSERT_EQ(testing::run_command(binary + " eval --embeddings " + (run / "emb.h5").string() +
                                       " --out " + (run / "report.json").string() + cfg + " 2>&1",
                                   &log),
              0)
        << name << "\n"
        << log;
    EXPECT_TRUE(stdfs::is_regular_file(run / "report.json")) << name;
  }
  const std::vector<std::string> full_losses = losses(dir / "run-full");
  ASSERT_EQ(full_losses.size(), 3u);
  EXPECT_EQ(losses(dir / "run-node"), full_losses);
  const eval::EmbeddingSet a = eval::read_embeddings(dir / "run-full/emb.h5");
  const eval::EmbeddingSet b = eval::read_embeddings(dir / "run-node/emb.h5");
  ASSERT_GT(a.N, 0);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.X, b.X);
}

}  // namespace
}  // namespace m3ret
