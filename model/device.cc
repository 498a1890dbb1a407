#include "model/device.h"

#include <fmt/format.h>

#include "core/config.h"

#if M3RET_WITH_CUDA
#include <ATen/autocast_mode.h>
#endif

namespace m3ret::trainer {

bool cuda_build() {
#if M3RET_WITH_CUDA
  return true;
#else
  return false;
#endif
}

torch::Device resolve_device(const std::string& name, int local_rank, const std::string& key) {
  if (name == "cpu") return torch::Device(torch::kCPU);
  if (name != "cuda")
    throw config::Error(fmt::format("{}: unknown device \"{}\" (cpu or cuda)", key, name));
  if (!cuda_build())
    throw config::Error(fmt::format(
        "{}: \"cuda\" needs a CUDA build of m3ret (cmake -DM3RET_CUDA=ON); this binary is "
        "CPU-only",
        key));
  const int64_t visible = torch::cuda::is_available() ? torch::cuda::device_count() : 0;
  if (visible == 0)
    throw config::Error(fmt::format(
        "{}: \"cuda\" but no CUDA device is visible (no GPU, no driver, or CUDA_VISIBLE_DEVICES "
        "hides them)",
        key));
  if (local_rank >= visible)
    throw config::Error(fmt::format(
        "{}: \"cuda\": local rank {} needs GPU cuda:{} but only {} GPU(s) are visible on this "
        "node (start at most that many ranks per node)",
        key, local_rank, local_rank, visible));
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
}

Autocast::Autocast(bool bf16) {
#if M3RET_WITH_CUDA
  if (!bf16) return;
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  on_ = true;
#else
  (void)bf16;
#endif
}

Autocast::~Autocast() {
#if M3RET_WITH_CUDA
  if (!on_) return;
  at::autocast::set_autocast_enabled(at::kCUDA, false);
  at::autocast::clear_cache();
#endif
}

NoAutocast::NoAutocast() {
#if M3RET_WITH_CUDA
  was_on_ = at::autocast::is_autocast_enabled(at::kCUDA);
  if (was_on_) at::autocast::set_autocast_enabled(at::kCUDA, false);
#endif
}

NoAutocast::~NoAutocast() {
#if M3RET_WITH_CUDA
  if (was_on_) at::autocast::set_autocast_enabled(at::kCUDA, true);
#endif
}

}  // namespace m3ret::trainer
