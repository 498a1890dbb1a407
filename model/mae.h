// Masked autoencoding (MAE, He et al. 2022) with tube masking for clips and volumes.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "model/config.h"
#include "model/objective.h"
#include "model/vit.h"

namespace m3ret::trainer {

// Tube masking: per sample, a random set of spatial positions (h, w) is kept,
// the same for every time step (so a masked tube cannot be read off its
// neighbours in time). Exactly round(gh*gw*(1-ratio)) positions (at least 1)
// are kept per time step.
struct TubeMask {
  torch::Tensor keep;  // int64 [B, K] visible token indices, ascending, K = gt * kept
  torch::Tensor mask;  // float32 [B, N]: 1 = masked, 0 = visible
};
TubeMask random_tube_mask(Grid grid, double ratio, const std::vector<uint64_t>& seeds);

// prepared [B, C, T, H, W] -> patches [B, N, t*ph*pw*C] with tokens in
// row-major (gt, gh, gw) order and each patch flattened as (t, ph, pw, C).
torch::Tensor patchify(const torch::Tensor& prepared, int64_t t, int64_t ph, int64_t pw);

// Mean over masked tokens of the per-token mean squared error.
// pred, target [B, N, P]; mask [B, N] (1 = masked). With norm_pix each target
// patch is normalised to mean 0 / variance 1 (unbiased variance, eps 1e-6) first.
torch::Tensor mae_loss(const torch::Tensor& pred, const torch::Tensor& target,
                       const torch::Tensor& mask, bool norm_pix);

// The light decoder: embeds the visible latents, fills masked positions with a
// learned mask token, adds its own sin-cos position embedding, runs blocks and
// predicts the pixels of every patch.
class MaeDecoder : public torch::nn::Module {
 public:
  MaeDecoder(int64_t encoder_width, const MaeConfig& cfg, int64_t patch_values);
  // latent [B, 1 + K, D] (CLS first), keep [B, K] -> pred [B, N, patch_values]
  torch::Tensor forward(const torch::Tensor& latent, const torch::Tensor& keep, Grid grid);

 private:
  int64_t width_;
  torch::nn::Linear embed_{nullptr}, pred_{nullptr};
  torch::Tensor mask_token_;  // [1, 1, Dd]
  torch::nn::ModuleList blocks_;
  torch::nn::LayerNorm norm_{nullptr};
};

class Mae : public Objective {
 public:
  Mae(std::shared_ptr<Encoder> encoder, const MaeConfig& cfg);
  // batch.mae = the view (mae_view: random resized crop with area in
  // [mae.crop_scale_min, 1] + flip) and its tube mask (mask_ratio_image when
  // the view's token grid has one time step, else mask_ratio_video), both
  // drawn from the samples' seeds.
  void prepare(TrainBatch& batch) const override;
  Loss compute(const TrainBatch& batch) override;

 private:
  std::shared_ptr<Encoder> encoder_;  // shared, not registered
  VitSpec spec_;                      // the encoder's (prepare() reads only this and cfg_)
  MaeConfig cfg_;
  std::shared_ptr<MaeDecoder> decoder_;
};

}  // namespace m3ret::trainer
