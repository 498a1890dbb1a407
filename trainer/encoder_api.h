// Loading a trained encoder for embedding (used by eval/ and `m3ret search`).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>

#include <torch/torch.h>

namespace m3ret::trainer {

class Encoder;  // trainer/vit.h

struct LoadedEncoder {
  std::shared_ptr<Encoder> encoder;  // in eval mode
  int64_t step = 0;                  // training step of the checkpoint (0 for random init)
  std::filesystem::path checkpoint;  // the checkpoint directory that was read
};

// `path` is a checkpoint directory or a run directory (its latest checkpoint).
// random_init: build the same architecture with the initial weights of that
// run (train.seed) instead of the trained ones: the baseline of the demo.
// Throws m3ret::Error naming the path if nothing valid is found.
LoadedEncoder load_encoder(const std::filesystem::path& path, bool random_init = false);

// batch: uint8 [B, C, T, H, W] (C = 1 or 3, as stored in shards)
// returns float32 [B, D], L2-normalised (CLS token or mean of patch tokens, per
// model.embedding).
torch::Tensor embed_batch(Encoder& encoder, const torch::Tensor& batch);

}  // namespace m3ret::trainer
