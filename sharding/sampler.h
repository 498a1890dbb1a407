// The distributed sampler: which samples each rank trains on at each step.
//
// Step s (0, 1, 2, ...) is a pure function of (seed, s) and the pools. A pool
// is a sample group (data/sample.h: a modality, or endoscopy-image for
// endoscopy still images, whose shape differs from the videos'), so that every
// batch has one shape; the API calls it "modality". With dataset weights
// (MixingConfig::datasets) a pool is a (group, dataset) pair, so that the
// datasets of a modality are drawn at their configured rates.
//  * its pool is drawn from the pool weights (group_weights, or
//    dataset_pool_weights) with a PRNG seeded by (seed, s): the same on every
//    rank, whatever the number of ranks;
//  * within pool p, batches walk an endless stream made of epochs, epoch e
//    being a permutation of p's samples seeded by (seed, p, e). The k-th batch
//    of p (k = how many earlier steps drew p) is the global batch
//    G = world * per_rank_batch consecutive samples of that stream; when the
//    pool holds at least G samples each epoch yields floor(n / G) batches and
//    the remainder is dropped (so a batch never repeats a sample), otherwise
//    batches run across epoch boundaries;
//  * rank r takes slice [r * b, (r + 1) * b) of the global batch. So N ranks
//    with batch b take, concatenated in rank order, exactly the samples of
//    1 rank with batch N * b, and ranks never share a sample within an epoch.
// set_position(s) then next() gives exactly what an uninterrupted run gives at
// step s (it replays the pool draws of steps < s: O(s), cheap).
//
// Thread safety: not thread-safe; one owner (the Loader) calls next().
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace m3ret::sharding {

// How the pool of a step is drawn (config [loader]: mixing, temperature,
// datasets, dataset_weights; docs/loading.md).
struct MixingConfig {
  std::string mode = "proportional";  // "proportional" | "uniform" | "temperature"
  double temperature = 2.0;           // weights n^(1/temperature) in "temperature" mode
  // Per-dataset weights: datasets[i] weighs dataset_weights[i] within its
  // modality; datasets not listed weigh 1. Empty: no dataset weights (batches
  // mix a group's datasets, as without a dataset column).
  std::vector<std::string> datasets;
  std::vector<double> dataset_weights;
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

// Throws config::Error naming loader.datasets / loader.dataset_weights when
// their lengths differ, a name is listed twice, a weight is below 0 or every
// weight is 0.
void validate_dataset_weights(const std::vector<std::string>& datasets,
                              const std::vector<double>& weights);

// With dataset weights: the weight of each (group, dataset) pool, from the
// sample counts per group and dataset. A modality's mixing weight (over its
// total size) is shared by its datasets in proportion to their dataset
// weights (unlisted: 1), each dataset's share by its groups in proportion to
// its samples in them; a modality whose datasets all weigh 0 is left out and
// the rest renormalised to sum 1. Throws config::Error naming the config key
// for a listed dataset that no pool holds (listing those present), and as
// validate_dataset_weights.
std::map<std::pair<std::string, std::string>, double> dataset_pool_weights(
    const std::map<std::string, std::map<std::string, int64_t>>& counts,
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
    std::string modality;          // the sample group (ShardSet name)
    std::string dataset;           // the dataset, with dataset weights; "" otherwise
    int64_t epoch = 0;             // epoch of the pool the first sample comes from
    std::vector<int64_t> indices;  // this rank's per_rank_batch indices (from the pool)
  };

  // pool: the eligible sample indices per group (e.g. the "train" split of a
  // ShardSet); empty pools are ignored. datasets: the dataset of every pool
  // element (datasets[g][i] for pool[g][i]; ShardSet's pool_datasets), needed
  // only when mixing has dataset weights: each (group, dataset) is then a pool
  // of its own, with its own epochs. Throws m3ret::Error when every pool is
  // empty, per_rank_batch < 1, rank is not in [0, world), or the dataset
  // weights do not fit the datasets (dataset_pool_weights).
  DistributedSampler(std::map<std::string, std::vector<int64_t>> pool, int64_t per_rank_batch,
                     int rank, int world, uint64_t seed, MixingConfig mixing = {},
                     const std::map<std::string, std::vector<std::string>>& datasets = {});

  Batch next();
  // The step of the batch next() returns next.
  int64_t position() const { return step_; }
  void set_position(int64_t step);

  int64_t per_rank_batch() const { return batch_; }
  uint64_t seed() const { return seed_; }
  int rank() const { return rank_; }
  int64_t global_batch() const { return batch_ * world_; }
  // Weight of each sample group (summed over its datasets).
  const std::map<std::string, double>& weights() const { return weights_; }
  // Weight of each (group, dataset) pool drawn (dataset "" without dataset weights).
  std::map<std::pair<std::string, std::string>, double> pool_weights() const;
  // Group drawn at `step` (pure function of seed and step).
  const std::string& modality_at(int64_t step) const { return pools_[pool_at(step)].group; }

 private:
  struct Pool {
    std::string group, dataset;
    std::vector<int64_t> indices;
    uint64_t stream = 0;  // permutation seed of its epochs
    double weight = 0;
    int64_t drawn = 0;  // batches before step_
    // Cached permutation of the current epoch.
    int64_t perm_epoch = -1;
    std::vector<int64_t> perm;
  };
  void build_group_pools(std::map<std::string, std::vector<int64_t>> pool,
                         const MixingConfig& mixing);
  void build_dataset_pools(const std::map<std::string, std::vector<int64_t>>& pool,
                           const std::map<std::string, std::vector<std::string>>& datasets,
                           const MixingConfig& mixing);
  size_t pool_at(int64_t step) const;
  // Position `offset` of epoch `epoch` of pool p's endless stream -> pool element.
  int64_t element(Pool& p, int64_t epoch, int64_t offset);

  // Fixed after construction.
  std::vector<Pool> pools_;         // by (group, dataset)
  std::vector<double> cumulative_;  // cumulative weights, by pools_
  std::map<std::string, double> weights_;
  int64_t batch_;
  int rank_, world_;
  uint64_t seed_;

  // Progress.
  int64_t step_ = 0;
};

}  // namespace m3ret::sharding
