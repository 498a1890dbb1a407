// The extension point for self-supervised objectives, and the trained model.
//
// An Objective owns its own parts (decoder, heads, teacher) as registered
// submodules and uses the shared encoder without registering it, so that
// `Model` (encoder + objective) lists every parameter exactly once.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "model/settings.h"
#include "model/vit.h"

namespace m3ret {
class Communicator;
}

namespace m3ret::trainer {

// MAE's per-sample inputs (Mae::prepare): the augmented view and its mask.
struct MaeInput {
  torch::Tensor view;  // float32 [B, C, T, H, W] in [0, 1]: random resized crop + flip
  torch::Tensor keep;  // int64 [B, K] visible token indices (mae.h: TubeMask)
  torch::Tensor mask;  // float32 [B, N]: 1 = masked
  Grid grid;           // token grid of `view` (the grid the mask is drawn for)
};

// SimDINO's per-sample inputs (SimDino::prepare): the multi-crop views, each
// kind concatenated along the batch dimension (view-major: view 0 of every
// sample, then view 1, ...), as the encoder consumes them.
struct SimDinoInput {
  torch::Tensor global;  // float32 [2B, C, T, H, W] in [0, 1]
  torch::Tensor local;   // float32 [L*B, C, Tl, Hl, Wl]; undefined when simdino.local_crops = 0
};

// One (micro-)batch's input to an objective.
//
// `images` and `seeds` are the raw input; Objective::prepare() turns them into
// the objective's ready inputs (`mae`, `simdino`): all the per-sample,
// seeded work (crops, flips, jitter, masks). compute() reads only those
// (never `images`, which the trainer drops after prepare() to save memory).
// The trainer prepares batches on the loader's worker threads
// (trainer.h: make_batch_transform), so the training thread only runs the model.
struct TrainBatch {
  torch::Tensor images;         // float32 [B, C, T, H, W] in [0, 1] (C = 1 or 3)
  std::vector<uint64_t> seeds;  // B per-sample seeds (augment.h: sample_seed)
  int64_t step = 0;
  std::optional<MaeInput> mae;          // set by Mae::prepare
  std::optional<SimDinoInput> simdino;  // set by SimDino::prepare
  std::thread::id prepared_on;          // the thread that prepared it (diagnostics, tests)

  int64_t size() const { return static_cast<int64_t>(seeds.size()); }
};

struct Loss {
  torch::Tensor total;  // scalar, differentiable
  // Named parts, for metrics.jsonl: detached scalars on the loss's device, so that computing a
  // loss never makes the host wait for the device (the trainer reads them once per step).
  std::map<std::string, torch::Tensor> terms;
};

class Objective : public torch::nn::Module {
 public:
  // The per-sample work of this objective on batch.images / batch.seeds
  // (augmented views, masks), stored in the batch. A pure function of the
  // configuration and the batch that touches no parameter or module state,
  // so it may run on any thread while the model trains (thread-safe; the
  // trainer calls it on the loader's workers). Throws m3ret::Error when the
  // batch has no images or not one seed per sample.
  virtual void prepare(TrainBatch& batch) const = 0;
  // The loss of one prepared batch; backward() on `total` gives the
  // gradients. Throws m3ret::Error naming the objective and the step when the
  // batch was not prepared for it.
  virtual Loss compute(const TrainBatch& batch) = 0;
  // Called after every optimizer step (teacher EMA). `step` is the step just
  // finished (0-based), `max_steps` the length of the run.
  virtual void after_optimizer_step(int64_t step, int64_t max_steps) {}
};

// Builds the objective named by settings.train.objective ("mae", "simdino",
// "mae+simdino"). SimDINO reads the number of ranks N from `comm` (null = 1
// rank) and sums Z^T Z over it when simdino.allreduce_cov is set. The encoder
// is shared, not owned.
std::shared_ptr<Objective> make_objective(const Settings& settings,
                                          std::shared_ptr<Encoder> encoder, Communicator* comm);

// What is trained and checkpointed: submodules "encoder" and "objective".
class Model : public torch::nn::Module {
 public:
  Model(const Settings& settings, Communicator* comm);
  std::shared_ptr<Encoder> encoder;
  std::shared_ptr<Objective> objective;
};

}  // namespace m3ret::trainer
