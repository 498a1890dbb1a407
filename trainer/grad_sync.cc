#include "trainer/grad_sync.h"

#include <algorithm>
#include <chrono>
#include <exception>

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
  bucket_of_.resize(params_.size());
  offset_of_.resize(params_.size());
  packed_.assign(params_.size(), 0);
  for (size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    M3RET_CHECK(p.scalar_type() == torch::kFloat32 && p.device().is_cpu() && p.is_contiguous(),
                "gradient sync supports contiguous CPU float32 parameters (parameter {})", k);
    if (buckets_.empty() || (buckets_.back().numel + p.numel() > cap && buckets_.back().numel > 0))
      buckets_.emplace_back();
    auto& b = buckets_.back();
    bucket_of_[k] = buckets_.size() - 1;
    offset_of_[k] = b.numel;
    b.params.push_back(k);
    b.numel += p.numel();
  }
  for (auto& b : buckets_) b.flat = torch::zeros({b.numel}, torch::kFloat32);
  if (comm_.size() > 1) {
    for (size_t k = 0; k < params_.size(); ++k)
      hooks_.push_back(params_[k].register_hook([this, k](const torch::Tensor& grad) {
        on_gradient(k, grad);
      }));
  }
}

GradientReducer::~GradientReducer() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    cancelled_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (size_t k = 0; k < hooks_.size(); ++k) params_[k].remove_hook(hooks_[k]);
}

void GradientReducer::arm() {
  if (comm_.size() == 1) return;
  M3RET_CHECK(!armed_, "GradientReducer::arm() called twice without average()");
  std::fill(packed_.begin(), packed_.end(), 0);
  for (auto& b : buckets_) b.pending = static_cast<int>(b.params.size());
  stats_ = SyncStats{};
  started_ = 0;
  completed_ = 0;
  error_ = nullptr;
  armed_ = true;
  thread_ = std::thread([this] { communicate(); });
}

void GradientReducer::pack(size_t k, const torch::Tensor& grad) {
  torch::NoGradGuard no_grad;
  auto& b = buckets_[bucket_of_[k]];
  auto slot = b.flat.narrow(0, offset_of_[k], params_[k].numel());
  if (grad.defined()) {
    slot.copy_(grad.reshape({-1}));
  } else {
    slot.zero_();
  }
  // Gradient accumulated by earlier micro-batches (AccumulateGrad adds `grad`
  // to it after this hook).
  const auto& acc = params_[k].grad();
  if (acc.defined()) slot.add_(acc.reshape({-1}));
  packed_[k] = 1;
}

void GradientReducer::on_gradient(size_t k, const torch::Tensor& grad) {
  if (!armed_ || packed_[k]) return;  // not a synchronised backward, or already packed
  pack(k, grad);
  bool full = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    full = --buckets_[bucket_of_[k]].pending == 0;
  }
  if (full) cv_.notify_all();
}

void GradientReducer::communicate() {
  try {
    for (size_t i = 0; i < buckets_.size(); ++i) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return cancelled_ || buckets_[i].pending == 0; });
        if (cancelled_) return;
        ++started_;
      }
      auto& b = buckets_[i];
      comm_.allreduce_sum(b.flat.data_ptr<float>(), static_cast<size_t>(b.numel));
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.order.push_back(static_cast<int>(i));
      stats_.bytes += b.numel * static_cast<int64_t>(sizeof(float));
      ++completed_;
    }
  } catch (...) {
    error_ = std::current_exception();
  }
}

void GradientReducer::average() {
  torch::NoGradGuard no_grad;
  if (comm_.size() == 1) {
    for (auto& p : params_)
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    return;
  }
  if (!armed_) arm();  // synchronise after backward, without overlap
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.reduced_before_average = started_;
    stats_.completed_before_average = completed_;
  }
  const auto t0 = std::chrono::steady_clock::now();
  // Parameters that received no gradient in this backward: their accumulated
  // gradient, or zeros.
  for (size_t k = 0; k < params_.size(); ++k) {
    if (packed_[k]) continue;
    pack(k, torch::Tensor());
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --buckets_[bucket_of_[k]].pending;
    }
  }
  cv_.notify_all();
  thread_.join();
  armed_ = false;
  stats_.exposed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (error_) std::rethrow_exception(error_);
  const float inv = 1.0f / static_cast<float>(comm_.size());
  for (size_t k = 0; k < params_.size(); ++k) {
    auto& p = params_[k];
    auto avg = buckets_[bucket_of_[k]].flat.narrow(0, offset_of_[k], p.numel()).view_as(p);
    if (p.grad().defined()) {
      p.mutable_grad().copy_(avg).mul_(inv);
    } else {
      p.mutable_grad() = avg.mul(inv);
    }
  }
}

}  // namespace m3ret::trainer
