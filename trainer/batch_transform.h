// The trainer's per-sample work on the loader's worker threads.
//
// train() gives its sharding::Loader the transform of make_batch_transform(),
// so that for every step the workers, in parallel with training and with each
// other: convert the uint8 pixels to float in [0, 1], give every sample its
// seed, split the rank's batch into train.grad_accum_steps micro-batches and
// run Objective::prepare() on each (crops, flips, jitter, multi-crop views,
// MAE masks). The training thread receives ready tensors (PreparedStep) and
// only runs the model.
//
// Determinism: sample i of rank r's batch of step s (per-rank batch B) gets
// sample_seed(train.seed, s, r * B + i) whatever thread prepares it, and
// every augmentation is per sample, so the prepared tensors are the same as
// preparing the whole batch on the training thread, on any number of ranks,
// workers or micro-batches.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "model/objective.h"
#include "sharding/loader.h"

namespace m3ret::trainer {

// What the workers make of one step's batch on this rank (stored in
// LoadedBatch::prepared).
struct PreparedStep {
  std::vector<TrainBatch> micro;  // grad_accum_steps prepared micro-batches, in sample order
};

// uint8 pixels [B, C, T, H, W] -> float in [0, 1]; seeds sample_seed(seed,
// step, rank * B + i) for i < B.
TrainBatch to_train_batch(const sharding::LoadedBatch& b, uint64_t seed, int rank);

// The Loader transform of a training run: to_train_batch, a split into
// `accum` micro-batches of B / accum consecutive samples, objective.prepare()
// on each, then the float images are dropped (compute() reads only the
// prepared inputs) and the batch's pixels released; the PreparedStep goes
// into LoadedBatch::prepared. Each worker runs torch with one intra-op
// thread (the workers are the parallelism; this keeps them from
// oversubscribing the cores the training thread uses). Throws m3ret::Error
// when B is not a multiple of `accum`. The objective must outlive the Loader.
sharding::BatchTransform make_batch_transform(std::shared_ptr<const Objective> objective,
                                              uint64_t seed, int rank, int64_t accum);

// The PreparedStep of a batch that went through make_batch_transform; throws
// m3ret::Error naming the step when it did not.
PreparedStep& prepared_step(sharding::LoadedBatch& b);

// Makes torch ops on the calling thread run with one intra-op thread (for
// worker threads; a no-op where LibTorch is not built with OpenMP).
void use_one_torch_thread_here();

}  // namespace m3ret::trainer
