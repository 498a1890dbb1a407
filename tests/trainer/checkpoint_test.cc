// Checkpoints: round trip, keep_last, `latest`, corrupt-checkpoint fallback,
// and the encoder API on top of them.
#include <gtest/gtest.h>

#include <fstream>

#include <torch/torch.h>

#include "core/fs.h"
#include "test_util.h"
#include "model/augment.h"
#include "model/encoder_api.h"
#include "model/objective.h"
#include "trainer/checkpoint.h"
#include "trainer/schedule.h"

namespace m3ret::trainer {
namespace {

namespace stdfs = std::filesystem;

Settings small_settings() {
  Settings s;
  s.model.preset = "tiny";
  s.model.width = 32;
  s.model.depth = 1;
  s.model.heads = 2;
  s.model.tubelet = {2, 8, 8};
  s.train.objective = "mae+simdino";
  s.train.seed = 11;
  s.mae.decoder_width = 16;
  s.mae.decoder_depth = 1;
  s.mae.decoder_heads = 2;
  s.simdino.head_hidden = 16;
  s.simdino.head_out = 8;
  s.simdino.local_crops = 1;
  return s;
}

const char* kToml =
    "[model]\npreset = \"tiny\"\nwidth = 32\ndepth = 1\nheads = 2\ntubelet = [2, 8, 8]\n"
    "[train]\nseed = 11\n";

// One optimizer step so that the optimizer has state.
void train_one_step(Model& model, torch::optim::Optimizer& opt) {
  std::vector<uint64_t> seeds = {sample_seed(1, 0, 0), sample_seed(1, 0, 1)};
  TrainBatch b{torch::rand({2, 1, 1, 16, 16}), seeds, 0};
  model.objective->prepare(b);
  opt.zero_grad();
  model.objective->compute(b).total.backward();
  opt.step();
}

void expect_same_weights(torch::nn::Module& a, torch::nn::Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (auto& item : pa) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
}

TEST(Checkpoint, RoundTripKeepLastLatestAndCorruptFallback) {
  testing::TempDir tmp("trainer-ckpt");
  const auto run = tmp.path() / "run";
  auto s = small_settings();
  torch::manual_seed(s.train.seed);
  Model model(s, nullptr);
  auto opt = make_optimizer(model, s.train);
  for (int64_t step : {10, 20, 30}) {
    train_one_step(model, *opt);
    save_checkpoint(run, CheckpointState{step, step + 1, kToml}, model, opt.get(), 2);
  }
  EXPECT_FALSE(stdfs::exists(run / "checkpoints" / checkpoint_name(10)));  // keep_last = 2
  EXPECT_TRUE(stdfs::exists(run / "checkpoints" / checkpoint_name(20)));
  EXPECT_EQ(fs::read_file(run / "checkpoints" / "latest"), "step-000000030\n");
  auto latest = find_latest_valid(run);
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->filename(), "step-000000030");
  EXPECT_EQ(verify_checkpoint(*latest), "");

  // Round trip: a fresh model and optimizer get the same weights and state.
  torch::manual_seed(999);
  Model other(s, nullptr);
  auto other_opt = make_optimizer(other, s.train);
  torch::manual_seed(5);
  auto r1 = torch::rand({4});
  auto st = load_checkpoint(*latest, &other, other_opt.get(), /*restore_rng=*/true);
  EXPECT_EQ(st.step, 30);
  EXPECT_EQ(st.sampler_position, 31);
  EXPECT_EQ(st.config_toml, kToml);
  expect_same_weights(model, other);
  // Optimizer state matches: the same next step gives the same weights.
  torch::manual_seed(7);
  train_one_step(model, *opt);
  torch::manual_seed(7);
  train_one_step(other, *other_opt);
  expect_same_weights(model, other);

  // Encoder API: a run folder means its latest checkpoint; by default SimDINO's
  // EMA teacher (mae+simdino trains one), the student on request.
  auto loaded = load_encoder(run);
  EXPECT_EQ(loaded.step, 30);
  EXPECT_EQ(loaded.checkpoint.filename(), "step-000000030");
  EXPECT_EQ(loaded.weights, "teacher");
  auto x = torch::randint(0, 256, {2, 1, 1, 16, 16}, torch::kUInt8);
  Model saved(s, nullptr);
  load_checkpoint(*latest, &saved, nullptr, false);
  saved.encoder->eval();
  auto saved_params = saved.named_parameters();
  for (const auto& p : loaded.encoder->named_parameters())
    EXPECT_TRUE(
        torch::equal(p.value(), saved_params["objective.simdino.teacher_encoder." + p.key()]))
        << p.key();
  // Three training steps moved the student away from the teacher (not EMA-updated here).
  EXPECT_FALSE(torch::allclose(embed_batch(*loaded.encoder, x), embed_batch(*saved.encoder, x)));
  EncoderChoice student;
  student.weights = "student";
  auto as_student = load_encoder(run, student);
  EXPECT_EQ(as_student.weights, "student");
  EXPECT_TRUE(torch::allclose(embed_batch(*as_student.encoder, x), embed_batch(*saved.encoder, x)));
  EncoderChoice teacher;
  teacher.weights = "teacher";
  EXPECT_EQ(load_encoder(run, teacher).weights, "teacher");
  // Pooling: the run's model.embedding unless overridden.
  EXPECT_EQ(loaded.pooling, "cls");
  EncoderChoice mean;
  mean.pooling = "mean";
  auto pooled = load_encoder(run, mean);
  EXPECT_EQ(pooled.pooling, "mean");
  EXPECT_TRUE(pooled.encoder->spec().mean_embedding);
  EncoderChoice bad;
  bad.weights = "ema";
  EXPECT_THROW(load_encoder(run, bad), m3ret::Error);
  // random_init: the run's initial weights (seed 11), not the trained ones.
  auto init = load_encoder(*latest, /*random_init=*/true);
  torch::manual_seed(s.train.seed);
  Model fresh(s, nullptr);
  expect_same_weights(*init.encoder, *fresh.encoder);
  EXPECT_EQ(init.step, 0);
  EXPECT_EQ(init.weights, "student");  // a random init has no teacher

  // Corrupt the newest: find_latest_valid falls back to the previous one.
  {
    std::fstream f(*latest / "model.pt", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x5a');
    f.put('\xa5');
  }
  EXPECT_NE(verify_checkpoint(*latest), "");
  auto fallback = find_latest_valid(run);
  ASSERT_TRUE(fallback);
  EXPECT_EQ(fallback->filename(), "step-000000020");
  EXPECT_THROW(resolve_checkpoint(*latest), m3ret::Error);
  stdfs::remove(run / "checkpoints" / checkpoint_name(20) / "manifest.json");
  EXPECT_FALSE(find_latest_valid(run));
  EXPECT_THROW(load_encoder(run), m3ret::Error);
  // No temporary folders are left behind.
  for (auto& e : stdfs::directory_iterator(run / "checkpoints"))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos);
}

// A MAE checkpoint has no teacher: "auto" gives the student, "teacher" is an
// error that names the checkpoint and the way out.
TEST(Checkpoint, TeacherWeightsOnlyWhereTheObjectiveTrainsOne) {
  testing::TempDir tmp("trainer-ckpt-mae");
  const auto run = tmp.path() / "run";
  auto s = small_settings();
  s.train.objective = "mae";
  torch::manual_seed(s.train.seed);
  Model model(s, nullptr);
  auto opt = make_optimizer(model, s.train);
  train_one_step(model, *opt);
  save_checkpoint(run, CheckpointState{1, 2, kToml}, model, opt.get(), 2);
  auto loaded = load_encoder(run);
  EXPECT_EQ(loaded.weights, "student");
  expect_same_weights(*loaded.encoder, *model.encoder);
  EncoderChoice teacher;
  teacher.weights = "teacher";
  try {
    load_encoder(run, teacher);
    ADD_FAILURE() << "no error";
  } catch (const m3ret::Error& e) {
    EXPECT_NE(std::string(e.what()).find("has no teacher"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("step-000000001"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--weights student"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace m3ret::trainer
