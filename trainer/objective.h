// The extension point for self-supervised objectives, and the trained model.
//
// An Objective owns its own parts (decoder, heads, teacher) as registered
// submodules and uses the shared encoder without registering it, so that
// `Model` (encoder + objective) lists every parameter exactly once.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "trainer/settings.h"
#include "trainer/vit.h"

namespace m3ret {
class Communicator;
}

namespace m3ret::trainer {

// One step's input to an objective.
struct TrainBatch {
  torch::Tensor images;         // float32 [B, C, T, H, W] in [0, 1] (C = 1 or 3)
  std::vector<uint64_t> seeds;  // B per-sample seeds (augment.h: sample_seed)
  int64_t step = 0;
};

struct Loss {
  torch::Tensor total;                  // scalar, differentiable
  std::map<std::string, double> terms;  // named parts, for metrics.jsonl
};

class Objective : public torch::nn::Module {
 public:
  // The loss of one batch; backward() on `total` gives the gradients.
  virtual Loss compute(const TrainBatch& batch) = 0;
  // Called after every optimizer step (teacher EMA). `step` is the step just
  // finished (0-based), `max_steps` the length of the run.
  virtual void after_optimizer_step(int64_t step, int64_t max_steps) {}
};

// Builds the objective named by settings.train.objective ("mae", "simdino",
// "mae+simdino"). `comm` is used by SimDINO when simdino.allreduce_cov is set
// (may be null otherwise). The encoder is shared, not owned.
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
