// Loading a trained encoder for embedding (used by eval/ and `m3ret search`).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <torch/torch.h>

namespace m3ret::trainer {

class Encoder;  // model/vit.h

struct LoadedEncoder {
  std::shared_ptr<Encoder> encoder;  // in eval mode
  int64_t step = 0;                  // training step of the checkpoint (0 for random init)
  std::filesystem::path checkpoint;  // the checkpoint directory that was read
  std::string weights;               // "teacher" or "student": which network was loaded
  std::string pooling;               // "cls" or "mean": what embed_batch returns
};

struct EncoderChoice {
  // random_init: the same architecture with the initial weights of the run
  // (train.seed) instead of the trained ones: the demo's baseline.
  bool random_init = false;
  // "auto": SimDINO's EMA teacher when the checkpoint has one (objectives
  // simdino and mae+simdino), else the student; "teacher": the teacher (an
  // error naming the checkpoint when it has none); "student": the trained
  // encoder itself. A random init has no teacher: always "student".
  std::string weights = "auto";
  // "" = the run's model.embedding; "cls" or "mean" to override it.
  std::string pooling;
};

// `path` is a checkpoint directory or a run directory (its latest checkpoint).
// Throws m3ret::Error naming the path if nothing valid is found, and for an
// unknown weights/pooling value.
LoadedEncoder load_encoder(const std::filesystem::path& path, const EncoderChoice& choice);
inline LoadedEncoder load_encoder(const std::filesystem::path& path, bool random_init = false) {
  EncoderChoice c;
  c.random_init = random_init;
  return load_encoder(path, c);
}

// batch: uint8 [B, C, T, H, W] (C = 1 or 3, as stored in shards)
// returns float32 [B, D], L2-normalised (CLS token or mean of patch tokens, per
// model.embedding).
torch::Tensor embed_batch(Encoder& encoder, const torch::Tensor& batch);

}  // namespace m3ret::trainer
