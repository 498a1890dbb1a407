// The prefetching loader: batches of pixels from a ShardSet, in step order.
//
// `workers` threads (an OrderedPool, core/ordered_pool.h) each take the next
// step from the sampler, read its samples (HDF5 reads are serialised;
// inflating runs in parallel) and apply the optional BatchTransform
// (augmentation) to it. At most
// `prefetch` batches are claimed beyond the one next() returns next (bounded
// memory). Batches come out in step order whatever thread finished first.
// An exception in a worker (a read or the transform of step s) is sticky:
// next() returns the batches of the steps before s, then rethrows it on the
// caller, and on every later call; the workers stop. The destructor stops
// and joins the workers (also on the error path).
//
// Videos: every sample of a batch is a clip drawn for this step (a new random
// start each time the sampler draws the video; ModalityInfo::clip_starts).
//
// Thread safety: next()/position() are called from one thread (the trainer).
// The ShardSet must outlive the Loader.
#pragma once

#include <any>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/ordered_pool.h"
#include "sharding/sampler.h"
#include "sharding/shard_set.h"

namespace m3ret::sharding {

struct LoaderConfig {
  int64_t workers = 2;   // reading threads
  int64_t prefetch = 4;  // batches read ahead
  std::string mixing = "proportional";
  double temperature = 2.0;
  std::vector<std::string> datasets;    // dataset weights (docs/loading.md): names
  std::vector<double> dataset_weights;  // and their weights within their modality

  template <class V>
  void visit(V& v) {
    v("workers", workers, "loader threads reading and decompressing batches",
      config::Range{1, 256});
    v("prefetch", prefetch, "batches read ahead of the training step", config::Range{1, 1024});
    v("mixing", mixing, "modality weights per step: pool size, equal, or size^(1/temperature)",
      config::OneOf{{"proportional", "uniform", "temperature"}});
    v("temperature", temperature, "temperature of mixing = \"temperature\"",
      config::Range{1e-3, 1e6});
    v("datasets", datasets,
      "datasets (the manifest's dataset column) weighed by dataset_weights within their modality "
      "(unlisted: weight 1); empty = no dataset weights");
    v("dataset_weights", dataset_weights, "relative weights of loader.datasets, in their order",
      config::Range{0, 1e9});
  }
  // Throws config::Error naming the keys (validate_dataset_weights).
  void validate() const { validate_dataset_weights(datasets, dataset_weights); }
  MixingConfig mixing_config() const {
    return MixingConfig{mixing, temperature, datasets, dataset_weights};
  }
};

struct LoadedBatch {
  int64_t step = 0;
  std::string modality;
  int64_t epoch = 0;
  std::vector<int64_t> indices;  // [B] indices into the ShardSet's modality
  // [B] the stored frame each sample's clip starts at: for videos a new clip
  // per step (clip_start(seed, step, rank * B + i), sampler.h); 0 otherwise.
  std::vector<int64_t> clip_starts;
  std::vector<uint8_t> pixels;  // [B, C, T, H, W], C as stored (1 or 3), T = clip frames
  int64_t B = 0, C = 0, T = 0, H = 0, W = 0;
  // What a BatchTransform made of the batch for its consumer (the trainer
  // stores its ready tensors here: trainer/batch_transform.h); the loader
  // only moves it. A transform that fills it may release `pixels`.
  std::any prepared;
};

// Work done on a worker thread after a batch is read and before it is queued,
// e.g. augmentation, so that it runs in parallel with training and with the
// other workers. It may rewrite `pixels` and B, C, T, H, W (consistently),
// or put its product into `prepared`.
// Called concurrently on different batches (must be thread-safe); the
// batch's step is in `step` (for per-sample seeds). An exception it throws is
// rethrown by next(), like a read error.
using BatchTransform = std::function<void(LoadedBatch&)>;

class Loader {
 public:
  // Starts the workers at the sampler's position. `transform` (optional) runs
  // on the workers (see BatchTransform).
  Loader(const ShardSet& shards, DistributedSampler sampler, LoaderConfig cfg,
         BatchTransform transform = {});
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The batch of step position(); blocks until it is read. Rethrows a worker's
  // exception.
  LoadedBatch next();
  // The step of the batch next() returns next (save it in checkpoints; resume
  // with a sampler set_position() to it).
  int64_t position() const;

 private:
  LoadedBatch load(const DistributedSampler::Batch& b) const;

  // Fixed after construction.
  const ShardSet& shards_;
  const LoaderConfig cfg_;
  const BatchTransform transform_;
  const uint64_t seed_;  // the sampler's: clip starts
  const int rank_;
  const int64_t first_;  // the step of the pool's first batch (the sampler's start position)
  // Drawn only by the pool's claims: under the pool's lock, in step order.
  DistributedSampler sampler_;
  // Reads and transforms batches on cfg_.workers threads, at most
  // cfg_.prefetch + 1 steps ahead of next(); the first error reaches next().
  // Last, so that its workers stop before the members they use go.
  std::unique_ptr<OrderedPool<DistributedSampler::Batch, LoadedBatch>> pool_;
};

}  // namespace m3ret::sharding
