// Embedding extraction: encodes the samples of a shard folder with a
// checkpoint and writes the embeddings file (eval/embeddings_file.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace m3ret {
class Communicator;
}

namespace m3ret::eval {

struct EmbedOptions {
  std::filesystem::path checkpoint;     // checkpoint directory or run directory (its latest)
  std::filesystem::path shards;         // SHARDS folder (index.json)
  std::filesystem::path out;            // embeddings file to write
  bool random_init = false;             // encode with the architecture's initial weights
  bool raw_pixels = false;              // baseline without a model: raw_pixel_features()
                                        // (checkpoint is then not read and may be empty)
  bool histogram = false;               // baseline without a model: histogram_features()
  std::string weights = "auto";         // trainer::EncoderChoice::weights: teacher|student|auto
  std::string pooling;                  // "" = the run's model.embedding, or cls|mean
  std::string split = "";               // only samples of this split ("" = all)
  std::vector<std::string> modalities;  // only these modalities (empty = all present)
  int64_t batch_size = 32;              // samples per forward pass, per rank
  int threads = 0;                      // intra-op threads per rank (0 = cores / local ranks)
  std::string device = "cpu";           // "cuda": encode on cuda:<local rank> (model/device.h)
};

// Collective over `comm`: every rank must call it with the same options.
// The selected samples (modality by modality in ShardSet order, then index
// order) are dealt to ranks round-robin (sample i to rank i % size); each rank
// encodes its share in modality-homogeneous batches; rank 0 gathers the
// embeddings and writes `out` (atomically) in the original sample order.
// Returns when the file is complete on every rank.
// The encoder runs on `device` (a CUDA build with a GPU per local rank for
// "cuda"; otherwise a config::Error naming --device, on every rank).
// Throws m3ret::Error (on every rank) if any rank fails, naming the cause on
// the rank that failed; a modality in `modalities` that the shards lack, or a
// selection with no sample, is an error naming the shards folder.
void embed(const EmbedOptions& options, Communicator& comm);

// train.modalities of the run a checkpoint folder comes from (from its
// resolved config.toml): what the embeddings file records so that evaluation
// can tell unseen modalities. Throws m3ret::Error naming the file if it cannot
// be read.
std::vector<std::string> checkpoint_train_modalities(const std::filesystem::path& checkpoint_dir);

// The raw-pixel baseline: each sample (uint8 [C, T, H, W], row-major at
// pixels + b*C*T*H*W for b < B) averaged over channels, area-downsampled to
// [4, 16, 16] (adaptive average pooling over T, H, W), centred (its mean
// subtracted) and L2-normalised. Returns B * kRawPixelDim floats. The same
// dimension for every modality, so cross-modal retrieval works too.
inline constexpr int64_t kRawPixelDim = 4 * 16 * 16;
std::vector<float> raw_pixel_features(const uint8_t* pixels, int64_t B, int64_t C, int64_t T,
                                      int64_t H, int64_t W);

// The colour/intensity-histogram baseline (a shortcut probe): for each sample
// (uint8 [C, T, H, W] as above) one histogram of kHistogramBins equal bins over
// [0, 256) per RGB channel, over all frames/slices and pixels (a grey sample,
// C = 1, fills all three channels alike), each normalised to sum 1, then the
// square root of every bin (Hellinger), the whole vector L2-normalised.
// Returns B * kHistogramDim floats; the same dimension for every modality.
inline constexpr int64_t kHistogramBins = 32;
inline constexpr int64_t kHistogramDim = 3 * kHistogramBins;
std::vector<float> histogram_features(const uint8_t* pixels, int64_t B, int64_t C, int64_t T,
                                      int64_t H, int64_t W);

}  // namespace m3ret::eval
