#include "trainer/device.h"

#include "core/communicator.h"
#include "model/objective.h"

#if M3RET_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>

#include "core/nccl_communicator.h"
#endif

namespace m3ret::trainer {

std::unique_ptr<Communicator> gradient_communicator(const torch::Device& device, Communicator& host,
                                                    double timeout_s) {
#if M3RET_WITH_CUDA
  if (device.is_cuda() && host.size() > 1) {
    auto nccl = std::make_unique<NcclCommunicator>(host, device.index());
    nccl->set_timeout(timeout_s);
    return nccl;
  }
#else
  (void)device, (void)host, (void)timeout_s;
#endif
  return nullptr;
}

namespace {
template <class F>
void each_tensor(TrainBatch& b, F&& f) {
  f(b.images);
  if (b.mae) {
    f(b.mae->view);
    f(b.mae->keep);
    f(b.mae->mask);
  }
  if (b.simdino) {
    f(b.simdino->global);
    f(b.simdino->local);
  }
}
}  // namespace

void batch_to_device(TrainBatch& batch, const torch::Device& device) {
  if (device.is_cpu()) return;
  each_tensor(batch, [&](torch::Tensor& t) {
    if (t.defined() && t.device() != device) t = t.to(device, /*non_blocking=*/t.is_pinned());
  });
}

void pin_batch(TrainBatch& batch, const torch::Device& device) {
#if M3RET_WITH_CUDA
  if (!device.is_cuda()) return;
  each_tensor(batch, [](torch::Tensor& t) {
    if (t.defined() && t.device().is_cpu() && !t.is_pinned()) t = t.pin_memory();
  });
#else
  (void)batch, (void)device;
#endif
}

HostSyncCheck::HostSyncCheck(const torch::Device& device) {
#if M3RET_WITH_CUDA
  if (!device.is_cuda()) return;
  auto& state = c10::cuda::warning_state();
  previous_ = static_cast<int>(state.get_sync_debug_mode());
  state.set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
  active_ = true;
#else
  (void)device;
#endif
}

HostSyncCheck::~HostSyncCheck() {
#if M3RET_WITH_CUDA
  if (active_)
    c10::cuda::warning_state().set_sync_debug_mode(
        static_cast<c10::cuda::SyncDebugMode>(previous_));
#endif
}

}  // namespace m3ret::trainer
