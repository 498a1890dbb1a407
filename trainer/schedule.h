// Precomputed-style schedules and the optimizer setup of a training run.
#pragma once

#include <cstdint>
#include <memory>

#include <torch/torch.h>

#include "trainer/config.h"

namespace m3ret::trainer {

// Learning rate of `step` (0-based): linear warmup from lr/warmup to lr over
// warmup_steps, then cosine decay to min_lr at max_steps.
double learning_rate(const TrainConfig& cfg, int64_t step);

// AdamW (betas 0.9/0.95) over the trainable parameters of `model`: weight
// decay on matrices and kernels, none on biases, norms and learned tokens
// (names ending in "_token").
std::unique_ptr<torch::optim::AdamW> make_optimizer(torch::nn::Module& model,
                                                    const TrainConfig& cfg);
// Sets the learning rate of every parameter group.
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

// Trainable parameters (requires_grad) of `model`, in registration order.
std::vector<torch::Tensor> trainable_parameters(torch::nn::Module& model);

}  // namespace m3ret::trainer
