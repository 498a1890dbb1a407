// Helpers shared by the model tests: a tiny model.
#pragma once

#include <cstdint>
#include <string>

#include "model/settings.h"

namespace m3ret::testing {

// A ViT of width 32 with 2x8x8 tubelets and small MAE/SimDINO heads
// (`depth` blocks, `local_crops` SimDINO local views).
inline trainer::Settings tiny_settings(const std::string& objective, int64_t depth = 2,
                                       int64_t local_crops = 2) {
  trainer::Settings s;
  s.model.preset = "tiny";
  s.model.width = 32;
  s.model.depth = depth;
  s.model.heads = 2;
  s.model.tubelet = {2, 8, 8};
  s.train.objective = objective;
  s.mae.decoder_width = 16;
  s.mae.decoder_depth = 1;
  s.mae.decoder_heads = 2;
  s.simdino.head_hidden = 32;
  s.simdino.head_out = 16;
  s.simdino.local_crops = local_crops;
  return s;
}

}  // namespace m3ret::testing
