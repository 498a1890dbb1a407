// Precomputed-style schedules and the optimizer setup of a training run.
#pragma once

#include <cstdint>
#include <memory>

#include <torch/torch.h>

#include "model/config.h"

namespace m3ret::trainer {

// Learning rate of `step` (0-based): linear warmup from lr/warmup to lr over
// warmup_steps, then cosine decay to min_lr at max_steps.
double learning_rate(const TrainConfig& cfg, int64_t step);

// Weight decay of `step` (0-based), as DINO schedules it: a cosine from
// weight_decay at step 0 to final_weight_decay() at max_steps,
// end + (start - end)(1 + cos(pi step / max_steps)) / 2, no warmup; constant
// when weight_decay_end = -1. A pure function of the step: a resumed run
// recomputes it, so checkpoints carry no extra state for it.
double weight_decay(const TrainConfig& cfg, int64_t step);

// AdamW (betas 0.9/0.95) over the trainable parameters of `model`: parameter
// group 0 (kDecayGroup) holds the matrices and kernels, with weight decay
// cfg.weight_decay; group 1 the biases, norms and learned tokens (names ending
// in "_token"), never decayed.
inline constexpr size_t kDecayGroup = 0;
std::unique_ptr<torch::optim::AdamW> make_optimizer(torch::nn::Module& model,
                                                    const TrainConfig& cfg);
// Sets the learning rate of every parameter group.
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);
// Sets the weight decay of the decayed group (kDecayGroup) of an optimizer
// made by make_optimizer; the other group stays at 0.
void set_weight_decay(torch::optim::Optimizer& optimizer, double wd);

// Trainable parameters (requires_grad) of `model`, in registration order.
std::vector<torch::Tensor> trainable_parameters(torch::nn::Module& model);

}  // namespace m3ret::trainer
