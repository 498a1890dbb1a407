// Data-parallel synchronisation of a model over a Communicator (host memory).
//
// Start: rank 0's parameters and buffers are broadcast to every rank.
//
// Each step (the DDP scheme, for C++): the trainable parameters are grouped,
// in reverse registration order (the order backward produces their
// gradients), into float32 buckets of at most `bucket_bytes` (default 25 MB).
// Gradients live in the buckets (PyTorch DDP's gradient_as_bucket_view): once
// synchronised, each parameter's .grad is a tensor over its slice of the
// bucket's storage (not an autograd view, so zero_gradients() below zeroes it
// in place), and autograd accumulates the next gradients straight into it.
// arm() before the backward whose gradients are to be synchronised installs
// the step: a post-hook on every parameter's gradient accumulator marks it
// ready as soon as autograd has accumulated its gradient (a gradient that is
// not yet in the bucket, e.g. after .grad was reset to undefined, is copied in
// once), and when a bucket is complete, a communication thread sums it over
// ranks and divides it by the world size while backward goes on. average()
// after backward completes the buckets of parameters that received no
// gradient (zeros, or their accumulated gradient) and waits for the thread;
// there is nothing to copy back. The thread reduces buckets in bucket order
// whatever order the hooks fire in, so every rank makes the same collective
// calls in the same order; all MPI calls of a step are on that thread (the
// main thread makes none between arm() and average()).
//
// Parameters must be contiguous float32 tensors: on the CPU with a host
// communicator (MPI), on one GPU with a device communicator (NCCL,
// Communicator::device_memory(); CUDA builds). One step at a time.
//
// On a GPU the buckets live on the device. When a bucket's last gradient has
// been accumulated, the hook records a CUDA event on the stream autograd
// computes on; the communication thread makes the NCCL stream wait for that
// event (the host never waits for the gradients), reduces the bucket there and
// scales it; average() makes the compute stream wait for the last bucket
// before it returns, so the optimizer's kernels run after the reduction.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "core/mutex.h"

namespace m3ret {
class Communicator;
}

namespace m3ret::trainer {

// Zeroes every gradient of the optimizer's parameters in place, so that a gradient that lives in
// a bucket stays there: Optimizer::zero_grad() of LibTorch 1.x, but LibTorch 2.x's default sets
// the gradients to none, which would make each backward allocate new gradients outside the
// buckets (and the reducer copy them in).
void zero_gradients(torch::optim::Optimizer& optimizer);

// The gradients' total 2-norm (float32 scalar on their device; 0 when none has a gradient), and
// when max_norm > 0 every gradient scaled in place by min(1, max_norm / (norm + 1e-6)): what
// torch::nn::utils::clip_grad_norm_ computes (and PyTorch's foreach version), kept on the device.
// LibTorch's C++ function returns the norm as a double, which would make the host wait for the
// device in every step.
torch::Tensor clip_gradients(const std::vector<torch::Tensor>& params, double max_norm);

// Copies rank 0's parameters and buffers of `module` to every rank (collective).
void broadcast_module(torch::nn::Module& module, Communicator& comm);

// What the last synchronised step did (for metrics, benchmarks and tests).
struct SyncStats {
  std::vector<int> order;            // bucket indices in the order they were reduced
  int reduced_before_average = 0;    // buckets whose reduction had started when average() began
  int completed_before_average = 0;  // buckets already reduced when average() began
  double exposed_s = 0;              // time average() waited (communication not hidden)
  int64_t bytes = 0;                 // bytes reduced
};

class GradientReducer {
 public:
  // params: the trainable parameters (requires_grad); kept by reference
  // (tensors share storage with the module). `comm` must outlive this object.
  GradientReducer(std::vector<torch::Tensor> params, Communicator& comm,
                  size_t bucket_bytes = 25u << 20);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Call before the backward pass whose gradients are averaged (the last
  // micro-batch of a step); exactly one backward may run between arm() and
  // average() (a second one makes average() throw). Without arm(), average()
  // reduces after backward.
  void arm();
  // Averages the gradients over ranks (collective). On one rank, only makes
  // undefined gradients zeros.
  void average();

  size_t bucket_count() const { return buckets_.size(); }
  // Parameter indices (into `params`) of bucket `b`, in packing order.
  const std::vector<size_t>& bucket_params(size_t b) const { return buckets_[b].params; }
  // The storage of bucket `b` (float32, its parameters' gradients in packing
  // order); undefined on one rank, which has nothing to reduce.
  const torch::Tensor& bucket_storage(size_t b) const { return buckets_[b].flat; }
  SyncStats stats() const;
  // Waits until `n` buckets of this step are reduced, at most `timeout`; returns whether they
  // were. Any thread may call it (tests use it to see reduction overlap backward).
  bool wait_for_reduced(int n, std::chrono::milliseconds timeout);

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_, in reduction order
    int64_t numel = 0;
    torch::Tensor flat;  // float32 [numel]
  };
  void on_ready(size_t k);  // autograd post-hook: parameter k's gradient is accumulated
  // Makes parameter k's .grad its slice of the bucket (copying a gradient that
  // is elsewhere in, zeros when there is none) and counts it ready.
  void place(size_t k);
  void communicate();  // the communication thread's body
  // The CUDA events and streams of a reducer on a GPU (grad_sync.cc); null on the CPU.
  struct DeviceSync;
  std::unique_ptr<DeviceSync> device_;

  std::vector<torch::Tensor> params_;
  Communicator& comm_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;      // parameter index -> bucket
  std::vector<int64_t> offset_of_;     // parameter index -> offset in its bucket
  std::vector<torch::Tensor> slices_;  // parameter index -> its gradient in the bucket
  std::vector<char> packed_;           // parameter ready this step

  // The gradient accumulators of the parameters (kept alive, as DDP does) and
  // the keys of the post-hooks installed on them.
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<uintptr_t> hook_keys_;

  // Shared by the thread that runs backward (hooks, average()) and the
  // communication thread.
  mutable Mutex mutex_;
  CondVar cv_;
  bool cancelled_ M3RET_GUARDED_BY(mutex_) = false;
  std::vector<int> pending_ M3RET_GUARDED_BY(mutex_);  // per bucket: parameters not yet ready
  int started_ M3RET_GUARDED_BY(mutex_) = 0;    // buckets whose reduction has started this step
  int completed_ M3RET_GUARDED_BY(mutex_) = 0;  // buckets reduced this step
  SyncStats stats_ M3RET_GUARDED_BY(mutex_);
  // The communication thread's exception; read after joining it.
  std::exception_ptr error_;
  std::thread thread_;
  // The backward thread's own.
  bool armed_ = false;
  bool second_backward_ = false;  // a hook fired twice for a parameter since arm()
};

}  // namespace m3ret::trainer
