#include "model/mae.h"

#include <cmath>

#include "core/error.h"
#include "model/augment.h"

namespace m3ret::trainer {

namespace {
constexpr uint64_t kStreamMask = 307;
}

TubeMask random_tube_mask(Grid grid, double ratio, const std::vector<uint64_t>& seeds) {
  const int64_t B = static_cast<int64_t>(seeds.size()), S = grid.h * grid.w;
  const int64_t kept = std::max<int64_t>(1, std::llround(S * (1.0 - ratio)));
  auto steps = torch::arange(grid.t, torch::kInt64).reshape({grid.t, 1}) * S;  // [gt, 1]
  std::vector<torch::Tensor> keeps;
  for (int64_t b = 0; b < B; ++b) {
    auto gen = make_generator(seeds[b] ^ kStreamMask);
    auto noise = at::rand({S}, gen, torch::kFloat32);
    auto spatial = std::get<0>(noise.argsort().narrow(0, 0, kept).sort());  // [kept]
    keeps.push_back((steps + spatial.reshape({1, kept})).reshape({-1}));    // [gt*kept]
  }
  TubeMask m;
  m.keep = torch::stack(keeps);  // [B, K]
  m.mask = torch::ones({B, grid.tokens()}, torch::kFloat32);
  m.mask.scatter_(1, m.keep, 0.0f);
  return m;
}

torch::Tensor patchify(const torch::Tensor& x, int64_t t, int64_t ph, int64_t pw) {
  const int64_t B = x.size(0), C = x.size(1);
  const int64_t gt = x.size(2) / t, gh = x.size(3) / ph, gw = x.size(4) / pw;
  return x.reshape({B, C, gt, t, gh, ph, gw, pw})
      .permute({0, 2, 4, 6, 3, 5, 7, 1})
      .reshape({B, gt * gh * gw, t * ph * pw * C});
}

torch::Tensor mae_loss(const torch::Tensor& pred, const torch::Tensor& target,
                       const torch::Tensor& mask, bool norm_pix) {
  auto tgt = target;
  if (norm_pix) {
    auto mean = tgt.mean(-1, true);
    auto var = tgt.var(-1, /*unbiased=*/true, /*keepdim=*/true);
    tgt = (tgt - mean) / (var + 1e-6).sqrt();
  }
  auto per_token = (pred - tgt).pow(2).mean(-1);  // [B, N]
  return (per_token * mask).sum() / mask.sum();
}

MaeDecoder::MaeDecoder(int64_t encoder_width, const MaeConfig& cfg, int64_t patch_values)
    : width_(cfg.decoder_width) {
  embed_ = register_module("embed", torch::nn::Linear(encoder_width, width_));
  mask_token_ = register_parameter("mask_token", torch::zeros({1, 1, width_}));
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.decoder_depth; ++i)
    blocks_->push_back(std::make_shared<Block>(width_, cfg.decoder_heads, 4.0, 0.0, 0.0));
  norm_ = register_module("norm",
                          torch::nn::LayerNorm(torch::nn::LayerNormOptions({width_}).eps(1e-6)));
  pred_ = register_module("pred", torch::nn::Linear(width_, patch_values));
  init_weights(*this);
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(mask_token_, 0.0, 0.02);
}

torch::Tensor MaeDecoder::forward(const torch::Tensor& latent, const torch::Tensor& keep,
                                  Grid grid) {
  const int64_t B = latent.size(0), N = grid.tokens();
  auto x = embed_->forward(latent);              // [B, 1+K, Dd]
  auto visible = x.narrow(1, 1, x.size(1) - 1);  // [B, K, Dd]
  auto idx = keep.unsqueeze(-1).expand({-1, -1, width_});
  auto full = mask_token_.expand({B, N, width_}).scatter(1, idx, visible);  // [B, N, Dd]
  full = full + position_embedding(grid, width_, full.device()).unsqueeze(0);
  auto tokens = torch::cat({x.narrow(1, 0, 1), full}, 1);
  for (auto& b : *blocks_) tokens = b->as<Block>()->forward(tokens);
  tokens = norm_->forward(tokens);
  return pred_->forward(tokens.narrow(1, 1, N));  // [B, N, P]
}

Mae::Mae(std::shared_ptr<Encoder> encoder, const MaeConfig& cfg)
    : encoder_(std::move(encoder)), spec_(encoder_->spec()), cfg_(cfg) {
  const auto& s = encoder_->spec();
  decoder_ = register_module(
      "decoder", std::make_shared<MaeDecoder>(s.width, cfg, s.tube_t * s.patch_h * s.patch_w * 3));
}

void Mae::prepare(TrainBatch& batch) const {
  M3RET_CHECK(
      batch.images.defined() && batch.images.dim() == 5 && batch.images.size(0) == batch.size(),
      "mae: prepare() needs images [B, C, T, H, W] and B seeds (step {}, {} seeds)", batch.step,
      batch.seeds.size());
  MaeInput in;
  in.view = mae_view(batch.images, batch.seeds, cfg_.crop_scale_min);
  in.grid = grid_for(spec_, in.view.size(2), in.view.size(3), in.view.size(4));
  const double ratio = in.grid.t == 1 ? cfg_.mask_ratio_image : cfg_.mask_ratio_video;
  auto mask = random_tube_mask(in.grid, ratio, batch.seeds);
  in.keep = std::move(mask.keep);
  in.mask = std::move(mask.mask);
  batch.mae = std::move(in);
}

Loss Mae::compute(const TrainBatch& batch) {
  if (!batch.mae)
    throw Error(
        fmt::format("mae: the batch of step {} was not prepared (call "
                    "Objective::prepare() first; the trainer does it on the loader's "
                    "workers)",
                    batch.step));
  const auto& s = encoder_->spec();
  const MaeInput& in = *batch.mae;
  auto prepared = encoder_->prepare(in.view);  // [B, 3, T, H, W] in [-1, 1]
  const Grid grid = encoder_->grid_of(prepared);
  M3RET_CHECK(grid == in.grid, "mae: the mask of step {} was drawn for another token grid",
              batch.step);
  auto latent = encoder_->forward_visible(prepared, in.keep);  // [B, 1+K, D]
  auto pred = decoder_->forward(latent, in.keep, grid);        // [B, N, P]
  auto target = patchify(prepared, s.tube_t, s.patch_h, s.patch_w);
  Loss out;
  out.total = mae_loss(pred, target, in.mask, cfg_.norm_pix_loss);
  out.terms["mae"] = out.total.detach();
  return out;
}

}  // namespace m3ret::trainer
