#include "model/config.h"

#include <map>
#include <tuple>

#include "data/sample.h"

namespace m3ret::trainer {

namespace {
void check_pair(const std::vector<double>& v, const char* key) {
  if (v.size() != 2 || v[0] > v[1])
    throw config::Error(fmt::format("{}: expected [lo, hi] with lo <= hi", key));
}
}  // namespace

void ModelConfig::validate() const {
  if (tubelet.size() != 3 && tubelet.size() != 2)
    throw config::Error(
        fmt::format("model.tubelet: expected [t, p, p] or [t, p], got {} values", tubelet.size()));
  spec();
}

VitSpec ModelConfig::spec() const {
  static const std::map<std::string, std::tuple<int64_t, int64_t, int64_t>> presets = {
      {"tiny", {192, 12, 3}},
      {"small", {384, 12, 6}},
      {"base", {768, 12, 12}},
      {"large", {1024, 24, 16}},
      {"huge", {1280, 32, 16}}};
  auto it = presets.find(preset);
  if (it == presets.end()) throw config::Error("model.preset: unknown preset '" + preset + "'");
  VitSpec s;
  std::tie(s.width, s.depth, s.heads) = it->second;
  if (width > 0) s.width = width;
  if (depth > 0) s.depth = depth;
  if (heads > 0) s.heads = heads;
  if (s.width % s.heads != 0)
    throw config::Error(
        fmt::format("model.width: {} is not divisible by model.heads {}", s.width, s.heads));
  if (s.width % 2 != 0)
    throw config::Error(
        fmt::format("model.width: {} must be even (sin-cos position embedding)", s.width));
  s.tube_t = tubelet.at(0);
  s.patch_h = tubelet.at(1);
  s.patch_w = tubelet.size() == 3 ? tubelet.at(2) : tubelet.at(1);
  s.mlp_ratio = mlp_ratio;
  s.drop_path = drop_path;
  s.layerscale = layerscale;
  s.mean_embedding = embedding == "mean";
  s.stem = stem;
  if (stem == "hmlp" && (s.patch_h % 4 != 0 || s.patch_w % 4 != 0 || s.width % 4 != 0))
    throw config::Error(
        fmt::format("model.stem: \"hmlp\" needs patch sides and width that are multiples of 4 "
                    "(model.tubelet [{}, {}, {}], width {})",
                    s.tube_t, s.patch_h, s.patch_w, s.width));
  return s;
}

void TrainConfig::validate() const {
  if (min_lr > lr)
    throw config::Error(fmt::format("train.min_lr: {} is larger than train.lr {}", min_lr, lr));
  if (weight_decay_end < 0 && weight_decay_end != -1)
    throw config::Error(fmt::format(
        "train.weight_decay_end: {} is negative (use -1 to keep train.weight_decay constant)",
        weight_decay_end));
  if (precision == "bf16" && device != "cuda")
    throw config::Error(fmt::format(
        "train.precision: \"bf16\" needs train.device = \"cuda\" (got \"{}\"); use \"fp32\" on "
        "the CPU",
        device));
  if (modalities.empty()) throw config::Error("train.modalities: must list at least one modality");
  for (const auto& m : modalities)
    if (!data::is_modality(m))
      throw config::Error("train.modalities: unknown modality '" + m + "'");
}

int64_t TrainConfig::per_rank_batch(int world) const {
  if (world < 1 || global_batch_size % world != 0)
    throw config::Error(
        fmt::format("train.global_batch_size: {} is not divisible by the number of ranks {}",
                    global_batch_size, world));
  return global_batch_size / world;
}

int64_t TrainConfig::micro_batch(int world) const {
  const int64_t per_rank = per_rank_batch(world);
  if (grad_accum_steps < 1 || per_rank % grad_accum_steps != 0)
    throw config::Error(fmt::format(
        "train.grad_accum_steps: train.global_batch_size {} over {} rank(s) gives {} samples per "
        "rank, which train.grad_accum_steps {} does not divide (each rank's micro-batch is "
        "global_batch_size / (ranks * grad_accum_steps))",
        global_batch_size, world, per_rank, grad_accum_steps));
  return per_rank / grad_accum_steps;
}

void MaeConfig::validate() const {
  if (decoder_width % decoder_heads != 0)
    throw config::Error(
        fmt::format("mae.decoder_width: {} is not divisible by mae.decoder_heads {}", decoder_width,
                    decoder_heads));
  if (decoder_width % 2 != 0)
    throw config::Error(fmt::format("mae.decoder_width: {} must be even", decoder_width));
}

void SimDinoConfig::validate() const {
  check_pair(global_crop_scale, "simdino.global_crop_scale");
  check_pair(local_crop_scale, "simdino.local_crop_scale");
  if (momentum_end < momentum_start)
    throw config::Error("simdino.momentum_end: must be >= simdino.momentum_start");
}

}  // namespace m3ret::trainer
