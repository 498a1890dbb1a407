// The trainer on its device: the gradient all-reduce's communicator and the
// prepared batches moved onto the device (which device: model/device.h).
#pragma once

#include <memory>

#include <torch/torch.h>

#include "model/device.h"

namespace m3ret {
class Communicator;
}

namespace m3ret::trainer {

struct TrainBatch;  // model/objective.h

// The communicator of the gradient all-reduce on `device`, made collectively
// over `host`: on a GPU with more than one rank, an NcclCommunicator on that
// GPU (core/nccl_communicator.h) with host's collective timeout; otherwise
// null (use `host`).
std::unique_ptr<Communicator> gradient_communicator(const torch::Device& device, Communicator& host,
                                                    double timeout_s);

// Moves the tensors of a prepared batch (MAE's view, keep, mask; SimDINO's
// views) in place to `device`. From pinned memory (pin_batch) the copies are
// asynchronous (non_blocking); nothing happens on the CPU.
void batch_to_device(TrainBatch& batch, const torch::Device& device);
// Puts the tensors of a prepared batch in page-locked memory when `device` is
// a GPU, so that batch_to_device copies them asynchronously (nothing for the
// CPU).
void pin_batch(TrainBatch& batch, const torch::Device& device);

// While it lives, a wait of the host for the GPU `device` (a copy to the host,
// .item(), a stream or device synchronisation made through LibTorch) throws a
// c10::Error naming it: LibTorch's sync debug mode at its error level
// (torch.cuda.set_sync_debug_mode("error") in Python), restored at the end.
// Nothing on the CPU or in a CPU-only build. One at a time per process.
class HostSyncCheck {
 public:
  explicit HostSyncCheck(const torch::Device& device);
  ~HostSyncCheck();
  HostSyncCheck(const HostSyncCheck&) = delete;
  HostSyncCheck& operator=(const HostSyncCheck&) = delete;

 private:
  // (Unused in a CPU-only build.)
  [[maybe_unused]] bool active_ = false;
  [[maybe_unused]] int previous_ = 0;  // the mode before (c10::cuda::SyncDebugMode)
};

}  // namespace m3ret::trainer
