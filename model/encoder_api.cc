#include "model/encoder_api.h"

#include "core/config.h"
#include "core/error.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/torch_archive.h"
#include "model/vit.h"

namespace m3ret::trainer {

namespace {

// The sub-archive of model.pt holding SimDINO's teacher encoder, if any:
// objective/teacher_encoder (simdino) or objective/simdino/teacher_encoder
// (mae+simdino).
bool find_teacher(torch::serialize::InputArchive& model, torch::serialize::InputArchive& out) {
  torch::serialize::InputArchive objective, simdino;
  if (!model.try_read("objective", objective)) return false;
  if (objective.try_read("teacher_encoder", out)) return true;
  return objective.try_read("simdino", simdino) && simdino.try_read("teacher_encoder", out);
}

}  // namespace

LoadedEncoder load_encoder(const std::filesystem::path& path, const EncoderChoice& choice) {
  if (choice.weights != "auto" && choice.weights != "teacher" && choice.weights != "student")
    throw Error(fmt::format("--weights '{}': expected teacher, student or auto", choice.weights));
  if (!choice.pooling.empty() && choice.pooling != "cls" && choice.pooling != "mean")
    throw Error(fmt::format("--pooling '{}': expected cls or mean", choice.pooling));
  const auto dir = resolve_checkpoint(path);
  config::Document doc;
  doc.add_file(dir / "config.toml");
  ModelConfig model_cfg;
  TrainConfig train_cfg;
  doc.bind("model", model_cfg);
  doc.bind("train", train_cfg);

  LoadedEncoder out;
  out.checkpoint = dir;
  VitSpec spec = model_cfg.spec();
  if (!choice.pooling.empty()) spec.mean_embedding = choice.pooling == "mean";
  out.pooling = spec.mean_embedding ? "mean" : "cls";
  // The trainer seeds torch with train.seed right before building the model,
  // whose first part is the encoder: the same draws give the same weights.
  torch::manual_seed(static_cast<uint64_t>(train_cfg.seed));
  out.encoder = std::make_shared<Encoder>(spec);
  out.weights = "student";
  if (!choice.random_init) {
    const auto file = dir / "model.pt";
    checkpoint_io(file, "read the encoder", [&] {
      torch::serialize::InputArchive archive, encoder_archive;
      load_torch_archive(archive, file);
      const bool teacher = choice.weights != "student" && find_teacher(archive, encoder_archive);
      if (choice.weights == "teacher" && !teacher)
        throw Error(
            fmt::format("{}: --weights teacher, but the checkpoint has no teacher "
                        "(objective '{}'; only simdino and mae+simdino train one); use "
                        "--weights student",
                        file.string(), train_cfg.objective));
      if (!teacher) archive.read("encoder", encoder_archive);
      load_module(*out.encoder, encoder_archive, file);
      out.weights = teacher ? "teacher" : "student";
    });
    out.step = load_checkpoint(dir, nullptr, nullptr, false).step;
  }
  out.encoder->eval();
  return out;
}

torch::Tensor embed_batch(Encoder& encoder, const torch::Tensor& batch) {
  M3RET_CHECK(batch.dim() == 5 && batch.scalar_type() == torch::kUInt8,
              "embed_batch expects uint8 [B, C, T, H, W], got {} dims of {}", batch.dim(),
              c10::toString(batch.scalar_type()));
  torch::NoGradGuard no_grad;
  auto x = batch.to(torch::kFloat32).div_(255.0);
  auto e = encoder.embed(x);
  return torch::nn::functional::normalize(
      e, torch::nn::functional::NormalizeFuncOptions().dim(1).p(2).eps(1e-12));
}

}  // namespace m3ret::trainer
