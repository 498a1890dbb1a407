#include "trainer/batch_transform.h"

#include <dlfcn.h>

#include <any>
#include <thread>
#include <utility>

#include "core/error.h"
#include "model/augment.h"

namespace m3ret::trainer {

void use_one_torch_thread_here() {
  thread_local bool done = false;
  if (done) return;
  done = true;
  // at::set_num_threads() would also change the process-wide default that
  // other threads (the training thread) initialise from; OpenMP's
  // omp_set_num_threads() sets only this thread's team size. Resolved at run
  // time from the OpenMP runtime LibTorch loaded (absent: nothing to do).
  using SetThreads = void (*)(int);
  static const auto omp_set =
      reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  (void)at::get_num_threads();  // LibTorch's lazy per-thread init first, so it does not undo ours
  if (omp_set) omp_set(1);
}

TrainBatch to_train_batch(const sharding::LoadedBatch& b, uint64_t seed, int rank) {
  M3RET_CHECK(b.B >= 1 && static_cast<int64_t>(b.pixels.size()) == b.B * b.C * b.T * b.H * b.W,
              "batch of step {}: {} pixel bytes for [{}, {}, {}, {}, {}]", b.step, b.pixels.size(),
              b.B, b.C, b.T, b.H, b.W);
  TrainBatch tb;
  tb.step = b.step;
  // from_blob does not copy; to(kFloat32) does, so the pixels may go after.
  auto pixels = const_cast<uint8_t*>(b.pixels.data());
  tb.images = torch::from_blob(pixels, {b.B, b.C, b.T, b.H, b.W}, torch::kUInt8)
                  .to(torch::kFloat32)
                  .div_(255.0);
  for (int64_t i = 0; i < b.B; ++i) tb.seeds.push_back(sample_seed(seed, b.step, rank * b.B + i));
  return tb;
}

sharding::BatchTransform make_batch_transform(std::shared_ptr<const Objective> objective,
                                              uint64_t seed, int rank, int64_t accum) {
  M3RET_CHECK(objective != nullptr && accum >= 1, "make_batch_transform: objective {}, accum {}",
              objective ? "set" : "null", accum);
  return [objective = std::move(objective), seed, rank, accum](sharding::LoadedBatch& b) {
    use_one_torch_thread_here();
    if (b.B % accum != 0)
      throw Error(
          fmt::format("batch of step {} has {} samples, not a multiple of "
                      "train.grad_accum_steps {}",
                      b.step, b.B, accum));
    torch::NoGradGuard no_grad;
    TrainBatch whole = to_train_batch(b, seed, rank);
    const int64_t m = b.B / accum;
    PreparedStep out;
    for (int64_t a = 0; a < accum; ++a) {
      TrainBatch tb;
      tb.step = b.step;
      tb.images = accum == 1 ? whole.images : whole.images.narrow(0, a * m, m);
      tb.seeds.assign(whole.seeds.begin() + a * m, whole.seeds.begin() + (a + 1) * m);
      objective->prepare(tb);
      tb.images = torch::Tensor();
      tb.prepared_on = std::this_thread::get_id();
      out.micro.push_back(std::move(tb));
    }
    std::vector<uint8_t>().swap(b.pixels);
    b.prepared = std::move(out);
  };
}

PreparedStep& prepared_step(sharding::LoadedBatch& b) {
  auto* p = std::any_cast<PreparedStep>(&b.prepared);
  if (!p)
    throw Error(
        fmt::format("batch of step {} was not prepared by the trainer's loader transform", b.step));
  return *p;
}

}  // namespace m3ret::trainer
