// The distributed sampler: which samples each rank trains on at each step.
//
// Step s (0, 1, 2, ...) is a pure function of (seed, s) and the pools. A pool
// is a sample group (data/sample.h: a modality, or endoscopy-image for
// endoscopy still images, whose shape differs from the videos'), so that every
// batch has one shape; the API calls it "modality".
//  * its pool is drawn from the group weights (group_weights) with a PRNG
//    seeded by (seed, s): the same on every rank, whatever the number of ranks;
//  * within modality m, batches walk an endless stream made of epochs, epoch e
//    being a permutation of m's pool seeded by (seed, m, e). The k-th batch of
//    m (k = how many earlier steps drew m) is the global batch
//    G = world * per_rank_batch consecutive samples of that stream; when the
//    pool holds at least G samples each epoch yields floor(n / G) batches and
//    the remainder is dropped (so a batch never repeats a sample), otherwise
//    batches run across epoch boundaries;
//  * rank r takes slice [r * b, (r + 1) * b) of the global batch. So N ranks
//    with batch b take, concatenated in rank order, exactly the samples of
//    1 rank with batch N * b, and ranks never share a sample within an epoch.
// set_position(s) then next() gives exactly what an uninterrupted run gives at
// step s (it replays the modality draws of steps < s: O(s), cheap).
//
// Thread safety: not thread-safe; one owner (the Loader) calls next().
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace m3ret::sharding {

// How the modality of a step is drawn (config [loader]: mixing, temperature).
struct MixingConfig {
  std::string mode = "proportional";  // "proportional" | "uniform" | "temperature"
  double temperature = 2.0;           // weights n^(1/temperature) in "temperature" mode
};

// Mixing weights per modality (normalised to sum 1) for pools of these sizes.
// Throws m3ret::Error for an unknown mode or a temperature <= 0.
std::map<std::string, double> mixing_weights(const std::map<std::string, int64_t>& pool_sizes,
                                             const MixingConfig& mixing);

// Weights per sample group (normalised to sum 1): the modalities are mixed by
// mixing_weights over their summed group sizes, and a modality's weight is
// shared by its groups in proportion to their sizes (endoscopy videos and
// stills). With one group per modality this is mixing_weights.
std::map<std::string, double> group_weights(const std::map<std::string, int64_t>& group_sizes,
                                            const MixingConfig& mixing);

// The clip a video sample takes when step `step` draws it: a start in
// [0, starts), uniform, a pure function of (seed, step, global_index) where
// global_index = rank * per_rank_batch + position in the rank's batch (as the
// trainer's per-sample augmentation seeds), so it is the same on any number
// of ranks, workers or resumes, and differs from step to step. starts >= 1.
int64_t clip_start(uint64_t seed, int64_t step, int64_t global_index, int64_t starts);

class DistributedSampler {
 public:
  struct Batch {
    int64_t step = 0;
    std::string modality;
    int64_t epoch = 0;             // epoch of `modality` the first sample comes from
    std::vector<int64_t> indices;  // this rank's per_rank_batch indices (from the pool)
  };

  // pool: the eligible sample indices per modality (e.g. the "train" split of a
  // ShardSet); empty pools are ignored. Throws m3ret::Error when every pool is
  // empty, per_rank_batch < 1, or rank is not in [0, world).
  DistributedSampler(std::map<std::string, std::vector<int64_t>> pool, int64_t per_rank_batch,
                     int rank, int world, uint64_t seed, MixingConfig mixing = {});

  Batch next();
  // The step of the batch next() returns next.
  int64_t position() const { return step_; }
  void set_position(int64_t step);

  int64_t per_rank_batch() const { return batch_; }
  uint64_t seed() const { return seed_; }
  int rank() const { return rank_; }
  int64_t global_batch() const { return batch_ * world_; }
  const std::map<std::string, double>& weights() const { return weights_; }
  // Modality drawn at `step` (pure function of seed and step).
  const std::string& modality_at(int64_t step) const;

 private:
  // Pool position `pos` of modality m's endless stream -> pool element.
  int64_t element(const std::string& m, int64_t epoch, int64_t offset);

  // Fixed after construction.
  std::map<std::string, std::vector<int64_t>> pool_;
  std::vector<std::string> names_;  // modalities with non-empty pools, sorted
  std::vector<double> cumulative_;  // cumulative weights, by names_
  std::map<std::string, double> weights_;
  int64_t batch_;
  int rank_, world_;
  uint64_t seed_;

  // Progress.
  int64_t step_ = 0;
  std::map<std::string, int64_t> drawn_;  // batches of each modality before step_
  // Cached permutation of each modality's current epoch.
  std::map<std::string, std::pair<int64_t, std::vector<int64_t>>> perm_;
};

}  // namespace m3ret::sharding
