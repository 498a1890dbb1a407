// GPU benchmark, m3ret side (not a test): one MAE training step of the
// trainer's model, objective and optimizer (model/objective.h,
// trainer/schedule.h), as `m3ret train` runs it on one GPU: the prepared
// batch (pinned) copied to the device, forward and loss under autocast,
// backward, clipping at train.clip_grad, AdamW. One fixed batch (random images,
// the objective's own crop and tube mask), so the figure is the model's, not
// the loader's. bench/gpu/run.sh runs it beside bench/gpu/mae_eager.py
// (PyTorch eager, the same model, batch and mask ratio).
//
//   bench_gpu_mae [--device cuda] [--precision bf16] [--preset base] [--batch 256]
//                 [--size 224] [--mask 0.75] [--steps 20] [--warmup 5]
//
// Prints one JSON line: images/s, ms of forward+backward (with the copy) and of
// the optimizer per step, peak GPU memory allocated.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/version.h>

#include "model/objective.h"
#include "trainer/device.h"
#include "trainer/grad_sync.h"
#include "trainer/schedule.h"

#if M3RET_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

using namespace m3ret::trainer;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string device = "cuda", precision = "bf16", preset = "base";
  int64_t batch = 256, size = 224, steps = 20, warmup = 5;
  double mask = 0.75;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--device")
      a.device = v;
    else if (k == "--precision")
      a.precision = v;
    else if (k == "--preset")
      a.preset = v;
    else if (k == "--batch")
      a.batch = std::stoll(v);
    else if (k == "--size")
      a.size = std::stoll(v);
    else if (k == "--mask")
      a.mask = std::stod(v);
    else if (k == "--steps")
      a.steps = std::stoll(v);
    else if (k == "--warmup")
      a.warmup = std::stoll(v);
    else {
      std::fprintf(stderr, "bench_gpu_mae: unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

double peak_gib(const torch::Device& d) {
#if M3RET_WITH_CUDA
  if (d.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(d.index());
    return double(stats.allocated_bytes[0].peak) / double(1 << 30);
  }
#endif
  (void)d;
  return -1;
}

int run(const Args& a) {
  Settings s;
  s.model.preset = a.preset;
  s.train.objective = "mae";
  s.train.device = a.device;
  s.train.precision = a.precision;
  s.mae.mask_ratio_image = a.mask;
  s.mae.crop_scale_min = 1.0;  // a fixed-size view: the same work as the eager side
  s.train.validate();
  const torch::Device device = resolve_device(a.device, 0);
  torch::manual_seed(0);
  auto model = std::make_shared<Model>(s, nullptr);
  model->to(device);
  model->train();
  auto optimizer = make_optimizer(*model, s.train);
  const auto params = trainable_parameters(*model);
  TrainBatch prepared;
  prepared.images = torch::rand({a.batch, 1, 1, a.size, a.size});
  for (int64_t i = 0; i < a.batch; ++i) prepared.seeds.push_back(static_cast<uint64_t>(i));
  model->objective->prepare(prepared);
  prepared.images = torch::Tensor();
  pin_batch(prepared, device);

  double t_fb = 0, t_opt = 0, loss = 0;
  for (int64_t step = 0; step < a.warmup + a.steps; ++step) {
    sync(device);
    const auto t0 = Clock::now();
    TrainBatch b = prepared;
    batch_to_device(b, device);
    Loss l = [&] {
      Autocast autocast(a.precision == "bf16");
      return model->objective->compute(b);
    }();
    l.total.backward();
    sync(device);
    const auto t1 = Clock::now();
    clip_gradients(params, s.train.clip_grad);
    optimizer->step();
    zero_gradients(*optimizer);
    sync(device);
    const auto t2 = Clock::now();
    if (step >= a.warmup) {
      t_fb += std::chrono::duration<double>(t1 - t0).count();
      t_opt += std::chrono::duration<double>(t2 - t1).count();
    }
    loss = l.terms["mae"].item<double>();
  }
  const double total = t_fb + t_opt;
  nlohmann::json out = {{"side", "m3ret"},
                        {"torch", TORCH_VERSION},
                        {"device", device.str()},
                        {"precision", a.precision},
                        {"preset", a.preset},
                        {"batch", a.batch},
                        {"size", a.size},
                        {"mask", a.mask},
                        {"steps", a.steps},
                        {"loss", loss},
                        {"images_per_s", double(a.batch * a.steps) / total},
                        {"ms_forward_backward", 1e3 * t_fb / double(a.steps)},
                        {"ms_optimizer", 1e3 * t_opt / double(a.steps)}};
  const double peak = peak_gib(device);
  out["peak_memory_gib"] = peak >= 0 ? nlohmann::json(peak) : nlohmann::json(nullptr);
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu_mae: %s\n", e.what());
    return 1;
  }
}
