// Size and cost of the encoder without building it (torch-free): parameter
// count and forward FLOPs at a given input shape, for `m3ret model`.
#pragma once

#include <cstdint>

#include "model/config.h"

namespace m3ret::trainer {

struct EncoderCost {
  int64_t tokens = 0;  // N patch tokens (without CLS)
  int64_t grid_t = 0, grid_h = 0, grid_w = 0;
  double macs = 0;  // multiply-accumulates of one forward pass, batch 1
  double flops() const { return 2.0 * macs; }
};

// Exactly the number of parameters of Encoder(spec) (tested against
// parameter_count): the stem (tubelet Conv3d or hMLP), CLS token, blocks,
// final norm; the sin-cos position embedding has none.
int64_t encoder_param_count(const VitSpec& spec);

// Cost of Encoder::forward on one input of T frames/slices of H x W (after the
// same T-repetition and trimming as Encoder::prepare). Counts the matmuls and
// the patch-embedding convolution (2 FLOPs per multiply-accumulate: qkv, QK^T,
// AV, proj, MLP); LayerNorm, softmax, GELU and additions are not counted, as
// in fvcore/timm's figures (ViT-B/16 at 224^2: 17.6 GMACs). Throws
// config::Error if the input is smaller than one patch.
EncoderCost encoder_forward_cost(const VitSpec& spec, int64_t T, int64_t H, int64_t W);

}  // namespace m3ret::trainer
