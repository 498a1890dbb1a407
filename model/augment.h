// Self-supervised augmentations on float tensors in [0, 1].
//
// Every random choice for sample b comes from its own generator seeded with
// seeds[b] (see sample_seed), so the views of a sample do not depend on the
// batch it is in, on the number of ranks, or on earlier steps: resumed and
// N-rank runs see the same views as an uninterrupted 1-rank run.
//
// Shapes: a batch is [B, C, T, H, W] (C = 1 or 3, kept as is). Not thread-safe
// per call; different calls may run concurrently.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "model/config.h"

namespace m3ret::trainer {

// A 64-bit seed for (run seed, step, global sample index, stream): splitmix64
// mixing, so nearby inputs give unrelated seeds. `stream` separates uses
// (crops, masks, ...).
uint64_t sample_seed(uint64_t run_seed, int64_t step, int64_t global_index, uint64_t stream = 0);

// A fresh CPU generator seeded with `seed`.
at::Generator make_generator(uint64_t seed);

// One sample x [C, T, H, W]: crop a random box whose H*W area is a fraction in
// [scale_lo, scale_hi] of the input (aspect ratio log-uniform in [3/4, 4/3]) and
// whose length along T is a fraction in [sqrt(scale_lo), sqrt(scale_hi)] of T,
// then resize (trilinear) to [C, out_t, out_h, out_w].
torch::Tensor random_resized_crop(const torch::Tensor& x, int64_t out_t, int64_t out_h,
                                  int64_t out_w, double scale_lo, double scale_hi,
                                  at::Generator& gen);
// Horizontal flip with probability 1/2. x [C, T, H, W].
torch::Tensor random_flip(const torch::Tensor& x, at::Generator& gen);
// Rotation in the H-W plane about the centre by an angle drawn uniformly in
// [-max_degrees, max_degrees] (bilinear, zeros outside); max_degrees = 0 returns x
// and draws nothing. x [C, T, H, W].
torch::Tensor random_rotate(const torch::Tensor& x, double max_degrees, at::Generator& gen);
// With probability 0.8: brightness and contrast each scaled by a factor in
// [1 - strength, 1 + strength]; result clamped to [0, 1]. x [C, T, H, W].
torch::Tensor intensity_jitter(const torch::Tensor& x, at::Generator& gen, double strength = 0.4);

// The multi-crop views of a batch (SimDINO).
struct Views {
  std::vector<torch::Tensor> global;  // 2 x [B, C, T, H, W] (input size)
  std::vector<torch::Tensor> local;   // local_crops x [B, C, Tl, Hl, Wl] (smaller)
};

// Local view size for an input of (T, H, W): H, W scaled by local_crop_size and
// T by local_crop_frames, rounded to multiples of the patch / tubelet (at least
// one patch; T unchanged when it is below two tubelets).
std::vector<int64_t> local_view_size(int64_t T, int64_t H, int64_t W, const VitSpec& vit,
                                     const SimDinoConfig& cfg);

// batch float [B, C, T, H, W] in [0, 1]; seeds: B per-sample seeds.
Views multi_crop(const torch::Tensor& batch, const std::vector<uint64_t>& seeds, const VitSpec& vit,
                 const SimDinoConfig& cfg);

// The MAE view: random resized crop (area scale [scale_lo, 1]) at the input
// size and a random flip. batch float [B, C, T, H, W] -> same shape.
torch::Tensor mae_view(const torch::Tensor& batch, const std::vector<uint64_t>& seeds,
                       double scale_lo);

}  // namespace m3ret::trainer
