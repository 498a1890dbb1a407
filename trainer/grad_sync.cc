#include "trainer/grad_sync.h"

#include <algorithm>

#include "core/communicator.h"
#include "core/error.h"

namespace m3ret::trainer {

void broadcast_module(torch::nn::Module& module, Communicator& comm) {
  if (comm.size() == 1) return;
  torch::NoGradGuard no_grad;
  auto send = [&](torch::Tensor t, const std::string& name) {
    M3RET_CHECK(t.device().is_cpu(), "broadcast_module: {} is not on the CPU", name);
    auto c = t.contiguous();
    comm.broadcast(c.data_ptr(), static_cast<size_t>(c.numel()) * c.element_size(), 0);
    if (!c.is_same(t)) t.copy_(c);
  };
  for (auto& p : module.named_parameters()) send(p.value(), p.key());
  for (auto& b : module.named_buffers()) send(b.value(), b.key());
}

GradientReducer::GradientReducer(std::vector<torch::Tensor> params, Communicator& comm,
                                 size_t bucket_bytes)
    : params_(std::move(params)), comm_(comm) {
  const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(bucket_bytes / sizeof(float)));
  int64_t largest = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    M3RET_CHECK(p.scalar_type() == torch::kFloat32 && p.device().is_cpu(),
                "gradient sync supports CPU float32 parameters (parameter {})", k);
    if (buckets_.empty() || (buckets_.back().numel + p.numel() > cap && buckets_.back().numel > 0))
      buckets_.emplace_back();
    buckets_.back().params.push_back(k);
    buckets_.back().numel += p.numel();
    largest = std::max(largest, buckets_.back().numel);
  }
  flat_ = torch::empty({largest}, torch::kFloat32);
}

void GradientReducer::average() {
  torch::NoGradGuard no_grad;
  for (auto& p : params_)
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
  if (comm_.size() == 1) return;
  const float inv = 1.0f / static_cast<float>(comm_.size());
  for (const auto& bucket : buckets_) {
    int64_t off = 0;
    for (size_t k : bucket.params) {  // pack
      auto& g = params_[k].mutable_grad();
      flat_.narrow(0, off, g.numel()).copy_(g.reshape({-1}));
      off += g.numel();
    }
    comm_.allreduce_sum(flat_.data_ptr<float>(), static_cast<size_t>(bucket.numel));
    flat_.narrow(0, 0, bucket.numel).mul_(inv);
    off = 0;
    for (size_t k : bucket.params) {  // unpack
      auto& g = params_[k].mutable_grad();
      g.copy_(flat_.narrow(0, off, g.numel()).view_as(g));
      off += g.numel();
    }
  }
}

}  // namespace m3ret::trainer
