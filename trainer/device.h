// Where training and embedding run: train.device ("cpu" | "cuda") and
// train.precision ("fp32" | "bf16").
//
// "cuda" means the GPU cuda:<local rank> (core/runtime.h: the ranks of a node
// take one GPU each). The GPU code is compiled only in a CUDA build (cmake
// -DM3RET_CUDA=ON, which defines M3RET_WITH_CUDA); a CPU build refuses "cuda"
// with a config::Error instead.
#pragma once

#include <memory>
#include <string>

#include <torch/torch.h>

namespace m3ret {
class Communicator;
}

namespace m3ret::trainer {

struct TrainBatch;  // trainer/objective.h

// True when this binary was built with CUDA and NCCL (cmake -DM3RET_CUDA=ON).
bool cuda_build();

// The torch device of `name` ("cpu" or "cuda") for the rank whose local rank is
// `local_rank`: "cuda" is cuda:<local_rank>. Throws config::Error naming `key`
// (and the reason) when "cuda" cannot be had: a CPU-only build, no GPU
// visible, or fewer visible GPUs than local ranks; or for any other name.
torch::Device resolve_device(const std::string& name, int local_rank,
                             const std::string& key = "train.device");

// The communicator of the gradient all-reduce on `device`, made collectively
// over `host`: on a GPU with more than one rank, an NcclCommunicator on that
// GPU (core/nccl_communicator.h) with host's collective timeout; otherwise
// null (use `host`).
std::unique_ptr<Communicator> gradient_communicator(const torch::Device& device,
                                                   Communicator& host, double timeout_s);

// Forward and loss in bfloat16 autocast on CUDA for the scope of the object
// (weights, gradients and optimizer stay float32); nothing when !bf16.
class Autocast {
 public:
  explicit Autocast(bool bf16);
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  bool on_ = false;
};

// Autocast off for the scope (statistics computed in float64, e.g. SimDINO's
// coding rate), restored after; nothing where autocast is not in use.
class NoAutocast {
 public:
  NoAutocast();
  ~NoAutocast();
  NoAutocast(const NoAutocast&) = delete;
  NoAutocast& operator=(const NoAutocast&) = delete;

 private:
  bool was_on_ = false;
};

// Moves the tensors of a prepared batch (MAE's view, keep, mask; SimDINO's
// views) in place to `device`. From pinned memory (pin_batch) the copies are
// asynchronous (non_blocking); nothing happens on the CPU.
void batch_to_device(TrainBatch& batch, const torch::Device& device);
// Puts the tensors of a prepared batch in page-locked memory when `device` is
// a GPU, so that batch_to_device copies them asynchronously (nothing for the
// CPU).
void pin_batch(TrainBatch& batch, const torch::Device& device);

}  // namespace m3ret::trainer
