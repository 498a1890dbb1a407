#include "model/augment.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/hash.h"

namespace m3ret::trainer {

namespace F = torch::nn::functional;

namespace {
double uniform(at::Generator& g, double lo, double hi) {
  return lo + (hi - lo) * at::rand({1}, g, torch::kFloat64).item<double>();
}

int64_t round_to(double v, int64_t multiple, int64_t lo, int64_t hi) {
  int64_t r = static_cast<int64_t>(std::llround(v / double(multiple))) * multiple;
  return std::clamp(r, lo, hi);
}

constexpr uint64_t kStreamGlobal = 101, kStreamLocal = 211, kStreamMae = 401;
}  // namespace

uint64_t sample_seed(uint64_t run_seed, int64_t step, int64_t global_index, uint64_t stream) {
  uint64_t h = splitmix64(run_seed);
  h = splitmix64(h ^ static_cast<uint64_t>(step));
  h = splitmix64(h ^ static_cast<uint64_t>(global_index));
  return splitmix64(h ^ stream);
}

at::Generator make_generator(uint64_t seed) {
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

torch::Tensor random_resized_crop(const torch::Tensor& x, int64_t out_t, int64_t out_h,
                                  int64_t out_w, double scale_lo, double scale_hi,
                                  at::Generator& gen) {
  M3RET_CHECK(x.dim() == 4, "random_resized_crop expects [C, T, H, W], got {} dims", x.dim());
  const int64_t T = x.size(1), H = x.size(2), W = x.size(3);
  const double area = uniform(gen, scale_lo, scale_hi);
  const double log_r = uniform(gen, std::log(3.0 / 4.0), std::log(4.0 / 3.0));
  const double ratio = std::exp(log_r);
  const int64_t h = std::clamp<int64_t>(std::llround(std::sqrt(area / ratio) * H), 1, H);
  const int64_t w = std::clamp<int64_t>(std::llround(std::sqrt(area * ratio) * W), 1, W);
  const double tf = uniform(gen, std::sqrt(scale_lo), std::sqrt(scale_hi));
  const int64_t t = T > 1 ? std::clamp<int64_t>(std::llround(tf * T), 1, T) : 1;
  const int64_t t0 = static_cast<int64_t>(uniform(gen, 0, double(T - t + 1) - 1e-9));
  const int64_t y0 = static_cast<int64_t>(uniform(gen, 0, double(H - h + 1) - 1e-9));
  const int64_t x0 = static_cast<int64_t>(uniform(gen, 0, double(W - w + 1) - 1e-9));
  auto crop = x.narrow(1, t0, t).narrow(2, y0, h).narrow(3, x0, w).unsqueeze(0);
  auto out = F::interpolate(crop, F::InterpolateFuncOptions()
                                      .size(std::vector<int64_t>{out_t, out_h, out_w})
                                      .mode(torch::kTrilinear)
                                      .align_corners(false));
  return out.squeeze(0);
}

torch::Tensor random_flip(const torch::Tensor& x, at::Generator& gen) {
  return uniform(gen, 0, 1) < 0.5 ? x.flip({3}) : x;
}

torch::Tensor random_rotate(const torch::Tensor& x, double max_degrees, at::Generator& gen) {
  if (max_degrees <= 0) return x;
  const double a = uniform(gen, -max_degrees, max_degrees) * M_PI / 180;
  const int64_t C = x.size(0), T = x.size(1), H = x.size(2), W = x.size(3);
  // affine_grid works in normalised coordinates: scale by the aspect ratio so
  // that a non-square view rotates rigidly.
  const double r = static_cast<double>(H) / static_cast<double>(W);
  const auto theta =
      torch::tensor({{std::cos(a), -std::sin(a) * r, 0.0}, {std::sin(a) / r, std::cos(a), 0.0}},
                    x.options().dtype(torch::kFloat32))
          .unsqueeze(0);
  const auto grid = F::affine_grid(theta, {1, C * T, H, W}, /*align_corners=*/false);
  const auto y = F::grid_sample(x.reshape({1, C * T, H, W}).to(torch::kFloat32), grid,
                                F::GridSampleFuncOptions()
                                    .mode(torch::kBilinear)
                                    .padding_mode(torch::kZeros)
                                    .align_corners(false));
  return y.reshape({C, T, H, W}).to(x.dtype());
}

torch::Tensor intensity_jitter(const torch::Tensor& x, at::Generator& gen, double strength) {
  const double apply = uniform(gen, 0, 1);
  const double b = uniform(gen, 1 - strength, 1 + strength);
  const double c = uniform(gen, 1 - strength, 1 + strength);
  if (apply >= 0.8) return x;
  auto y = x * b;
  auto mean = y.mean();
  return ((y - mean) * c + mean).clamp(0.0, 1.0);
}

std::vector<int64_t> local_view_size(int64_t T, int64_t H, int64_t W, const VitSpec& vit,
                                     const SimDinoConfig& cfg) {
  const int64_t h =
      round_to(H * cfg.local_crop_size, vit.patch_h, vit.patch_h, std::max(H, vit.patch_h));
  const int64_t w =
      round_to(W * cfg.local_crop_size, vit.patch_w, vit.patch_w, std::max(W, vit.patch_w));
  const int64_t t =
      T >= 2 * vit.tube_t ? round_to(T * cfg.local_crop_frames, vit.tube_t, vit.tube_t, T) : T;
  return {t, h, w};
}

Views multi_crop(const torch::Tensor& batch, const std::vector<uint64_t>& seeds, const VitSpec& vit,
                 const SimDinoConfig& cfg) {
  M3RET_CHECK(batch.dim() == 5 && batch.size(0) == static_cast<int64_t>(seeds.size()),
              "multi_crop: batch [B, C, T, H, W] needs B seeds (B = {}, seeds {})", batch.size(0),
              seeds.size());
  const int64_t B = batch.size(0), T = batch.size(2), H = batch.size(3), W = batch.size(4);
  const auto lsize = local_view_size(T, H, W, vit, cfg);
  std::vector<std::vector<torch::Tensor>> g(2), l(cfg.local_crops);
  for (int64_t b = 0; b < B; ++b) {
    auto gen_g = make_generator(seeds[b] ^ kStreamGlobal);
    auto gen_l = make_generator(seeds[b] ^ kStreamLocal);
    auto x = batch[b];
    for (auto& views : g) {
      auto v = random_resized_crop(x, T, H, W, cfg.global_crop_scale[0], cfg.global_crop_scale[1],
                                   gen_g);
      v = random_rotate(v, cfg.rotation, gen_g);
      views.push_back(intensity_jitter(random_flip(v, gen_g), gen_g));
    }
    for (auto& views : l) {
      auto v = random_resized_crop(x, lsize[0], lsize[1], lsize[2], cfg.local_crop_scale[0],
                                   cfg.local_crop_scale[1], gen_l);
      v = random_rotate(v, cfg.rotation, gen_l);
      views.push_back(intensity_jitter(random_flip(v, gen_l), gen_l));
    }
  }
  Views out;
  for (auto& v : g) out.global.push_back(torch::stack(v));
  for (auto& v : l) out.local.push_back(torch::stack(v));
  return out;
}

torch::Tensor mae_view(const torch::Tensor& batch, const std::vector<uint64_t>& seeds,
                       double scale_lo) {
  M3RET_CHECK(batch.dim() == 5 && batch.size(0) == static_cast<int64_t>(seeds.size()),
              "mae_view: batch [B, C, T, H, W] needs B seeds");
  const int64_t T = batch.size(2), H = batch.size(3), W = batch.size(4);
  std::vector<torch::Tensor> out;
  for (int64_t b = 0; b < batch.size(0); ++b) {
    auto gen = make_generator(seeds[b] ^ kStreamMae);
    out.push_back(random_flip(random_resized_crop(batch[b], T, H, W, scale_lo, 1.0, gen), gen));
  }
  return torch::stack(out);
}

}  // namespace m3ret::trainer
