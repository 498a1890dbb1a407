#include "trainer/grad_sync.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>

#include <torch/csrc/autograd/function.h>
#include <torch/version.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "core/communicator.h"
#include "core/error.h"

#if M3RET_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "core/nccl_communicator.h"
#endif

namespace m3ret::trainer {

torch::Tensor clip_gradients(const std::vector<torch::Tensor>& params, double max_norm) {
  std::vector<torch::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().detach().norm(2).to(torch::kFloat32));
  if (norms.empty()) return torch::zeros({});
  auto total = torch::stack(norms).norm(2);
  if (max_norm > 0) {
    const auto coef = torch::clamp_max(max_norm / (total + 1e-6), 1.0);
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().detach().mul_(coef.to(p.grad().scalar_type()));
  }
  return total;
}

void zero_gradients(torch::optim::Optimizer& optimizer) {
#if TORCH_VERSION_MAJOR >= 2
  optimizer.zero_grad(/*set_to_none=*/false);
#else
  optimizer.zero_grad();  // in place: LibTorch 1.x has no set_to_none
#endif
}

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

namespace {

// Runs after a gradient accumulator (AccumulateGrad) has updated its
// parameter's .grad: the gradient of this backward is then in place.
class ReadyHook : public torch::autograd::FunctionPostHook {
 public:
  explicit ReadyHook(std::function<void()> fn) : fn_(std::move(fn)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    fn_();
    return outputs;
  }

 private:
  std::function<void()> fn_;
};

}  // namespace

#if M3RET_WITH_CUDA
// A reducer on a GPU: one event per bucket (recorded on the compute stream when
// the bucket is complete) and one for the end of the reduction (recorded on
// the NCCL stream).
struct GradientReducer::DeviceSync {
  NcclCommunicator* nccl = nullptr;
  c10::DeviceIndex device = 0;
  std::vector<cudaEvent_t> ready;
  cudaEvent_t done = nullptr;

  DeviceSync(Communicator& comm, size_t buckets)
      : nccl(dynamic_cast<NcclCommunicator*>(&comm)), ready(buckets) {
    M3RET_CHECK(nccl != nullptr, "gradient sync on a GPU needs an NcclCommunicator");
    device = static_cast<c10::DeviceIndex>(nccl->device());
    c10::cuda::CUDAGuard guard(device);
    for (auto& e : ready)
      M3RET_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming) == cudaSuccess,
                  "cudaEventCreate failed");
    M3RET_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming) == cudaSuccess,
                "cudaEventCreate failed");
  }
  ~DeviceSync() {
    for (auto& e : ready) cudaEventDestroy(e);
    cudaEventDestroy(done);
  }
  // Bucket b is complete on the stream this thread computes on.
  void bucket_ready(size_t b) {
    cudaEventRecord(ready[b], c10::cuda::getCurrentCUDAStream(device).stream());
  }
  // On the communication thread: reduce bucket b on the NCCL stream once its event has fired.
  void reduce(torch::Tensor& flat, size_t b, float inv, bool last) {
    c10::cuda::CUDAGuard guard(device);
    nccl->wait_event(ready[b]);
    nccl->allreduce_sum(flat.data_ptr<float>(), static_cast<size_t>(flat.numel()));
    c10::cuda::CUDAStreamGuard on_nccl(c10::cuda::getStreamFromExternal(nccl->stream(), device));
    flat.mul_(inv);
    if (last) cudaEventRecord(done, nccl->stream());
  }
  // The compute stream (of the calling thread) waits for the whole reduction.
  void compute_waits() {
    cudaStreamWaitEvent(c10::cuda::getCurrentCUDAStream(device).stream(), done, 0);
  }
};
#else
struct GradientReducer::DeviceSync {};
#endif

GradientReducer::GradientReducer(std::vector<torch::Tensor> params, Communicator& comm,
                                 size_t bucket_bytes)
    : params_(std::move(params)), comm_(comm) {
  const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(bucket_bytes / sizeof(float)));
  bucket_of_.resize(params_.size());
  offset_of_.resize(params_.size());
  packed_.assign(params_.size(), 0);
  for (size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    M3RET_CHECK(p.scalar_type() == torch::kFloat32 && p.is_contiguous() && p.requires_grad() &&
                    p.is_leaf() && (comm_.size() == 1 || p.is_cuda() == comm_.device_memory()),
                "gradient sync supports contiguous float32 leaf parameters that require a "
                "gradient, on the CPU with a host communicator and on a GPU with a device one "
                "(parameter {} is on {})",
                k, p.device().str());
    if (buckets_.empty() || (buckets_.back().numel + p.numel() > cap && buckets_.back().numel > 0))
      buckets_.emplace_back();
    auto& b = buckets_.back();
    bucket_of_[k] = buckets_.size() - 1;
    offset_of_[k] = b.numel;
    b.params.push_back(k);
    b.numel += p.numel();
  }
  if (comm_.size() > 1) {
    // One rank has nothing to reduce: no bucket storage (a model's worth of
    // memory), no hooks.
    for (auto& b : buckets_)
      b.flat = torch::zeros({b.numel}, params_[b.params.front()].options().dtype(torch::kFloat32));
#if M3RET_WITH_CUDA
    if (comm_.device_memory()) device_ = std::make_unique<DeviceSync>(comm_, buckets_.size());
#endif
    // Each parameter's gradient slice: a tensor over the bucket's storage with
    // the parameter's shape. Made with set_() rather than narrow()/view() so
    // that it is not an autograd view (zero_gradients() detaches .grad in
    // place, which autograd refuses for views).
    slices_.resize(params_.size());
    for (size_t k = 0; k < params_.size(); ++k) {
      const auto& flat = buckets_[bucket_of_[k]].flat;
      slices_[k] =
          torch::empty({0}, flat.options())
              .set_(flat.storage(), offset_of_[k], params_[k].sizes(), params_[k].strides());
    }
    for (size_t k = 0; k < params_.size(); ++k) {
      accumulators_.push_back(torch::autograd::impl::grad_accumulator(params_[k]));
      M3RET_CHECK(accumulators_.back() != nullptr, "parameter {} has no gradient accumulator", k);
      hook_keys_.push_back(accumulators_.back()->add_post_hook(
          std::make_unique<ReadyHook>([this, k] { on_ready(k); })));
    }
  }
}

GradientReducer::~GradientReducer() {
  {
    MutexLock lock(mutex_);
    cancelled_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (size_t k = 0; k < accumulators_.size(); ++k) accumulators_[k]->del_post_hook(hook_keys_[k]);
}

void GradientReducer::arm() {
  if (comm_.size() == 1) return;
  M3RET_CHECK(!armed_, "GradientReducer::arm() called twice without average()");
  std::fill(packed_.begin(), packed_.end(), 0);
  {
    MutexLock lock(mutex_);
    pending_.resize(buckets_.size());
    for (size_t i = 0; i < buckets_.size(); ++i)
      pending_[i] = static_cast<int>(buckets_[i].params.size());
    stats_ = SyncStats{};
    started_ = 0;
    completed_ = 0;
  }
  error_ = nullptr;
  second_backward_ = false;
  armed_ = true;
  thread_ = std::thread([this] { communicate(); });
}

void GradientReducer::place(size_t k) {
  {
    torch::NoGradGuard no_grad;
    auto& grad = params_[k].mutable_grad();
    const auto& slice = slices_[k];
    if (!grad.defined()) {
      slice.zero_();  // no gradient this step and none accumulated
      grad = slice;
    } else if (grad.data_ptr() != slice.data_ptr()) {
      // The gradient is elsewhere (the first step, or .grad was reset or
      // replaced): copy it in once; from now on autograd accumulates into the
      // bucket.
      slice.copy_(grad);
      grad = slice;
    }
    packed_[k] = 1;
  }
  bool full = false;
  {
    MutexLock lock(mutex_);
    full = --pending_[bucket_of_[k]] == 0;
#if M3RET_WITH_CUDA
    // Recorded before the communication thread can see the bucket complete.
    if (full && device_) device_->bucket_ready(bucket_of_[k]);
#endif
  }
  if (full) cv_.notify_all();
}

void GradientReducer::on_ready(size_t k) {
  if (!armed_) return;  // not a synchronised backward
  if (packed_[k]) {
    // A second backward after arm(): it has just added into a bucket that may
    // be on the wire. average() reports it.
    second_backward_ = true;
    return;
  }
  place(k);
}

void GradientReducer::communicate() {
  try {
    const float inv = 1.0f / static_cast<float>(comm_.size());
    for (size_t i = 0; i < buckets_.size(); ++i) {
      {
        MutexLock lock(mutex_);
        while (!cancelled_ && pending_[i] != 0) cv_.wait(lock);
        if (cancelled_) return;
        ++started_;
      }
      auto& b = buckets_[i];
#if M3RET_WITH_CUDA
      if (device_) {
        device_->reduce(b.flat, i, inv, i + 1 == buckets_.size());
      } else
#endif
      {
        comm_.allreduce_sum(b.flat.data_ptr<float>(), static_cast<size_t>(b.numel));
        b.flat.mul_(inv);  // the sum over ranks -> the average
      }
      MutexLock lock(mutex_);
      stats_.order.push_back(static_cast<int>(i));
      stats_.bytes += b.numel * static_cast<int64_t>(sizeof(float));
      ++completed_;
      cv_.notify_all();
    }
  } catch (...) {
    error_ = std::current_exception();
  }
}

bool GradientReducer::wait_for_reduced(int n, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  MutexLock lock(mutex_);
  while (completed_ < n && !cancelled_) {
    if (!cv_.wait_until(lock, deadline)) break;
  }
  return completed_ >= n;
}

SyncStats GradientReducer::stats() const {
  MutexLock lock(mutex_);
  return stats_;
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
    MutexLock lock(mutex_);
    stats_.reduced_before_average = started_;
    stats_.completed_before_average = completed_;
  }
  const auto t0 = std::chrono::steady_clock::now();
  // Parameters that received no gradient in this backward: their accumulated
  // gradient, or zeros.
  for (size_t k = 0; k < params_.size(); ++k)
    if (!packed_[k]) place(k);
  thread_.join();
  armed_ = false;
#if M3RET_WITH_CUDA
  if (device_ && !error_) device_->compute_waits();
#endif
  {
    MutexLock lock(mutex_);
    stats_.exposed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  if (error_) std::rethrow_exception(error_);
  M3RET_CHECK(!second_backward_,
              "GradientReducer: more than one backward ran between arm() and average(); the "
              "gradients of this step are not the average (arm() before the last backward only)");
}

}  // namespace m3ret::trainer
