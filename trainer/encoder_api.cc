#include "trainer/encoder_api.h"

#include "core/config.h"
#include "core/error.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/vit.h"

namespace m3ret::trainer {

LoadedEncoder load_encoder(const std::filesystem::path& path, bool random_init) {
  const auto dir = resolve_checkpoint(path);
  config::Document doc;
  doc.add_file(dir / "config.toml");
  ModelConfig model_cfg;
  TrainConfig train_cfg;
  doc.bind("model", model_cfg);
  doc.bind("train", train_cfg);

  LoadedEncoder out;
  out.checkpoint = dir;
  // The trainer seeds torch with train.seed right before building the model,
  // whose first part is the encoder: the same draws give the same weights.
  torch::manual_seed(static_cast<uint64_t>(train_cfg.seed));
  out.encoder = std::make_shared<Encoder>(model_cfg.spec());
  if (!random_init) {
    const auto file = dir / "model.pt";
    try {
      torch::serialize::InputArchive archive, encoder_archive;
      archive.load_from(file.string());
      archive.read("encoder", encoder_archive);
      out.encoder->load(encoder_archive);
    } catch (const c10::Error& e) {
      throw Error(fmt::format("{}: cannot read the encoder: {}", file.string(),
                              e.what_without_backtrace()));
    }
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
