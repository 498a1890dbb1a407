// The unified ViT encoder: one model for images, clips and volumes.
//
// Input: float32 [B, C, T, H, W] with values in [0, 1] (C = 1 or 3; C = 1 is
// expanded to 3). Inside, pixels are scaled to [-1, 1]; a clip with T smaller
// than the tubelet depth t is repeated along T up to t (an image becomes a
// 2-frame clip); T, H, W are then cut to multiples of (t, ph, pw) (the
// remainder at the end of each axis is dropped). The stem gives the token grid
// (gt, gh, gw), N = gt*gh*gw tokens in row-major (t, h, w) order: with
// model.stem = "linear" a Conv3d with kernel = stride = (t, ph, pw); with "hmlp"
// the hierarchical MLP stem of DeiT III (Touvron et al., "Three things everyone
// should know about Vision Transformers", 2022) over tubelets: Conv3d with
// kernel = stride = (t, ph/4, pw/4) to D/4 channels, LayerNorm, GELU; Conv3d
// (1, 2, 2) to D/4, LayerNorm, GELU; Conv3d (1, 2, 2) to D, LayerNorm. Its
// kernels never overlap, so every token depends on its own tubelet alone, as
// masked training needs; its LayerNorms normalise the channels at each position
// (the paper's BatchNorm would mix the samples of a batch). A fixed, separable
// sin-cos position embedding (no weights) is added, so every grid works with the
// same weights. A CLS token (position embedding 0) is prepended; pre-norm
// blocks; final LayerNorm.
//
// Not thread-safe (a torch Module). Randomness (drop-path) uses torch's default
// generator.
#pragma once

#include <cstdint>
#include <memory>

#include <torch/torch.h>

#include "model/config.h"

namespace m3ret::trainer {

// Token grid of an input: (gt, gh, gw) and N = gt*gh*gw.
struct Grid {
  int64_t t = 0, h = 0, w = 0;
  int64_t tokens() const { return t * h * w; }
  bool operator==(const Grid& o) const { return t == o.t && h == o.h && w == o.w; }
};

// The token grid the encoder of `spec` makes of an input with T frames of
// H x W (what Encoder::grid_of(Encoder::prepare(x)) gives, without the tensor).
Grid grid_for(const VitSpec& spec, int64_t T, int64_t H, int64_t W);

// 1-D sin-cos embedding: positions float [N] -> [N, dim] (dim even):
// [sin(p*w_0..w_{dim/2-1}), cos(p*w_0..)], w_i = 10000^(-2i/dim).
torch::Tensor sincos_1d(const torch::Tensor& positions, int64_t dim);
// Separable 3-D sin-cos position embedding of a grid: float [N, dim], row-major
// (t, h, w). The dims are split [dt | dh | dw] with dh = dw = 2*floor(dim/6)
// and dt = dim - 2*dh; each part depends on one coordinate only.
torch::Tensor sincos_3d(Grid grid, int64_t dim);
// sincos_3d(grid, dim) on `device`, computed once per (grid, dim, device) and
// kept (no host-to-device copy per forward). Thread-safe.
torch::Tensor position_embedding(Grid grid, int64_t dim, const torch::Device& device);

// LayerNorm over the channels (dim 1) of [B, C, ...] at every position; weight
// and bias [C] (1 and 0 at first), eps 1e-6.
class ChannelNormImpl : public torch::nn::Module {
 public:
  explicit ChannelNormImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::Tensor weight_, bias_;
};
TORCH_MODULE(ChannelNorm);

// Multi-head self-attention; fused kernel on LibTorch >= 2.0, matmul-softmax before.
class Attention : public torch::nn::Module {
 public:
  Attention(int64_t dim, int64_t heads);
  torch::Tensor forward(const torch::Tensor& x);  // [B, N, D] -> [B, N, D]

 private:
  int64_t heads_;
  torch::nn::Linear qkv_{nullptr}, proj_{nullptr};
};

// Pre-norm transformer block: x + dp(ls1*attn(norm1 x)); x + dp(ls2*mlp(norm2 x)).
class Block : public torch::nn::Module {
 public:
  Block(int64_t dim, int64_t heads, double mlp_ratio, double drop_path, double layerscale);
  torch::Tensor forward(const torch::Tensor& x);  // [B, N, D] -> [B, N, D]

 private:
  torch::Tensor drop_path(const torch::Tensor& x);
  double drop_path_;
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr};
  std::shared_ptr<Attention> attn_;
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
  torch::Tensor ls1_, ls2_;  // [D] LayerScale, undefined when off
};

// Xavier-uniform Linear weights and zero biases, LayerNorm (1, 0), as in MAE.
void init_weights(torch::nn::Module& m);

class Encoder : public torch::nn::Module {
 public:
  explicit Encoder(const VitSpec& spec);
  const VitSpec& spec() const { return spec_; }
  int64_t width() const { return spec_.width; }

  // Repeat/trim/scale as described above: float [B, C, T, H, W] in [0, 1]
  // -> float [B, 3, T', H', W'] in [-1, 1].
  torch::Tensor prepare(const torch::Tensor& x) const;
  // Grid of a prepared input [B, 3, T', H', W'].
  Grid grid_of(const torch::Tensor& prepared) const;
  // Patch tokens of a prepared input with position embedding: [B, N, D].
  torch::Tensor embed_patches(const torch::Tensor& prepared);

  // All tokens: x float [B, C, T, H, W] in [0, 1] -> [B, 1 + N, D] (CLS first).
  torch::Tensor forward(const torch::Tensor& x);
  // Only the tokens `keep` (int64 [B, K], indices in [0, N)) of a prepared
  // input, for MAE: -> [B, 1 + K, D].
  torch::Tensor forward_visible(const torch::Tensor& prepared, const torch::Tensor& keep);
  // Embedding for retrieval, not normalised: [B, D] (CLS or mean of patch
  // tokens, per spec().mean_embedding).
  torch::Tensor embed(const torch::Tensor& x);

 private:
  torch::Tensor run_blocks(torch::Tensor tokens);  // [B, 1+K, D] -> normed [B, 1+K, D]
  VitSpec spec_;
  // The stem, registered as "patch_embed": one Conv3d (patch_embed.weight/bias,
  // as checkpoints have always named it) or the hMLP stem (patch_embed.0.* to .7.*).
  torch::nn::Conv3d patch_{nullptr};
  torch::nn::Sequential hmlp_{nullptr};
  torch::Tensor cls_;  // [1, 1, D]
  torch::nn::ModuleList blocks_;
  torch::nn::LayerNorm norm_{nullptr};
};

// Number of elements of all parameters of `m` (trainable or not).
int64_t parameter_count(torch::nn::Module& m);

}  // namespace m3ret::trainer
