#include "model/model_info.h"

#include <cmath>
#include <string>
#include <vector>

namespace m3ret::trainer {

namespace {

// The hMLP stem's three convolutions (vit.h), per token: (input values of one
// kernel, output channels, positions within a patch).
struct StemLayer {
  int64_t in, out, positions;
};
std::vector<StemLayer> hmlp_layers(const VitSpec& s) {
  const int64_t q = s.width / 4;
  return {{3 * s.tube_t * (s.patch_h / 4) * (s.patch_w / 4), q, 16},
          {q * 4, q, 4},
          {q * 4, s.width, 1}};
}

}  // namespace

int64_t encoder_param_count(const VitSpec& s) {
  const int64_t D = s.width;
  const int64_t hidden = static_cast<int64_t>(std::llround(D * s.mlp_ratio));
  int64_t stem = 3 * s.tube_t * s.patch_h * s.patch_w * D + D;
  if (s.stem == "hmlp") {
    stem = 0;
    for (const auto& l : hmlp_layers(s)) stem += l.in * l.out + l.out + 2 * l.out;  // conv, norm
  }
  const int64_t block = 2 * 2 * D              // norm1, norm2
                        + D * 3 * D + 3 * D    // qkv
                        + D * D + D            // proj
                        + D * hidden + hidden  // fc1
                        + hidden * D + D       // fc2
                        + (s.layerscale > 0 ? 2 * D : 0);
  return stem + D /* CLS */ + s.depth * block + 2 * D /* norm */;
}

EncoderCost encoder_forward_cost(const VitSpec& s, int64_t T, int64_t H, int64_t W) {
  if (T < 1 || H < s.patch_h || W < s.patch_w)
    throw config::Error("input " + std::to_string(T) + "x" + std::to_string(H) + "x" +
                        std::to_string(W) + " is smaller than one patch " +
                        std::to_string(s.patch_h) + "x" + std::to_string(s.patch_w));
  EncoderCost c;
  c.grid_t = std::max(T, s.tube_t) / s.tube_t;  // T < t is repeated up to t
  c.grid_h = H / s.patch_h;
  c.grid_w = W / s.patch_w;
  c.tokens = c.grid_t * c.grid_h * c.grid_w;
  const double D = double(s.width), N = double(c.tokens), L = N + 1;
  const double hidden = double(std::llround(D * s.mlp_ratio));
  double stem = N * D * 3.0 * double(s.tube_t * s.patch_h * s.patch_w);
  if (s.stem == "hmlp") {
    stem = 0;
    for (const auto& l : hmlp_layers(s)) stem += N * double(l.positions * l.in * l.out);
  }
  const double block = L * D * 3 * D          // qkv
                       + 2 * L * L * D        // QK^T and AV over all heads
                       + L * D * D            // proj
                       + 2 * L * D * hidden;  // fc1, fc2
  c.macs = stem + double(s.depth) * block;
  return c;
}

}  // namespace m3ret::trainer
