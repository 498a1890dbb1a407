// Data-parallel synchronisation of a model over a Communicator (host memory).
//
// Start: rank 0's parameters and buffers are broadcast to every rank.
// Each step, after backward: gradients of the trainable parameters are packed,
// in reverse parameter order (the order backward produces them), into float32
// buckets of at most `bucket_bytes`; each bucket is summed over ranks, divided
// by the world size and copied back. Every rank reduces the same buckets in the
// same order. A trainable parameter whose gradient is undefined on a rank
// contributes zeros, and afterwards has the averaged gradient on every rank,
// so that the optimizer sees the same state everywhere.
//
// The seam for overlap with backward is the bucket: a later version fills and
// launches buckets from autograd hooks on a communication thread; `average()`
// then only waits for them.
//
// Not thread-safe; parameters must be contiguous CPU float32 tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace m3ret {
class Communicator;
}

namespace m3ret::trainer {

// Copies rank 0's parameters and buffers of `module` to every rank (collective).
void broadcast_module(torch::nn::Module& module, Communicator& comm);

class GradientReducer {
 public:
  // params: the trainable parameters (requires_grad); kept by reference
  // (tensors share storage with the module). `comm` must outlive this object.
  GradientReducer(std::vector<torch::Tensor> params, Communicator& comm,
                  size_t bucket_bytes = 25u << 20);

  // Averages the gradients over ranks (collective). No-op on one rank except
  // that undefined gradients become zeros.
  void average();

  size_t bucket_count() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_, in reduction order
    int64_t numel = 0;
  };
  std::vector<torch::Tensor> params_;
  Communicator& comm_;
  std::vector<Bucket> buckets_;
  torch::Tensor flat_;  // float32 staging buffer, size of the largest bucket
};

}  // namespace m3ret::trainer
