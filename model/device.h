// Where training and embedding run: train.device ("cpu" | "cuda") and
// train.precision ("fp32" | "bf16").
//
// "cuda" means the GPU cuda:<local rank> (core/runtime.h: the ranks of a node
// take one GPU each). The GPU code is compiled only in a CUDA build (cmake
// -DM3RET_CUDA=ON, which defines M3RET_WITH_CUDA); a CPU build refuses "cuda"
// with a config::Error instead. The trainer's side (the gradient communicator,
// batches onto the device) is trainer/device.h.
#pragma once

#include <string>

#include <torch/torch.h>

namespace m3ret::trainer {

// True when this binary was built with CUDA and NCCL (cmake -DM3RET_CUDA=ON).
bool cuda_build();

// The torch device of `name` ("cpu" or "cuda") for the rank whose local rank is
// `local_rank`: "cuda" is cuda:<local_rank>. Throws config::Error naming `key`
// (and the reason) when "cuda" cannot be had: a CPU-only build, no GPU
// visible, or fewer visible GPUs than local ranks; or for any other name.
torch::Device resolve_device(const std::string& name, int local_rank,
                             const std::string& key = "train.device");

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

}  // namespace m3ret::trainer
