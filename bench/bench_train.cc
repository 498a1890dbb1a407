// Benchmark (not a test): data-parallel training step throughput and exposed
// gradient communication.
//
//   mpiexec -n R bench_train [PRESET] [STEPS] [BATCH_PER_RANK] [SIZE] [OBJECTIVE] [SYNC]
//
// One torch thread per rank. Builds the trainer's Model (default ViT-S
// "small", MAE with its default decoder) and runs STEPS (default 6; the first 2
// are warm-up and not counted) training steps on synthetic SIZE x SIZE RGB
// images (default 224), BATCH_PER_RANK (default 8) per rank, exactly as
// trainer::train does: forward, GradientReducer::arm(), backward (buckets
// reduced while it runs), average(), clip, AdamW. Prints samples/s over all
// ranks (slowest rank's time), and the exposed communication (time waiting in
// average()) as a share of the step. Compare R = 1 and R = 2. SYNC "overlap"
// (the default, as m3ret train) or "after": no arm(), every bucket is reduced
// after backward (to see what the overlap gains). The per-sample
// augmentation (Objective::prepare) is done before the timed step, as the
// trainer does it on the loader's worker threads.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <torch/torch.h>

#include "core/fork_server.h"
#include "core/communicator.h"
#include "core/runtime.h"
#include "model/augment.h"
#include "model/objective.h"
#include "model/settings.h"
#include "trainer/grad_sync.h"
#include "trainer/schedule.h"

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

int main(int argc, char** argv) {
  m3ret::fork_server::start();  // before any thread, as m3ret does
  using namespace m3ret::trainer;
  auto& rt = m3ret::Runtime::init(&argc, &argv);
  auto& comm = rt.world_comm();
  const std::string preset = argc > 1 ? argv[1] : "small";
  const int steps = argc > 2 ? std::atoi(argv[2]) : 6;
  const int64_t batch = argc > 3 ? std::atoll(argv[3]) : 8;
  const int64_t size = argc > 4 ? std::atoll(argv[4]) : 224;
  const std::string objective = argc > 5 ? argv[5] : "mae";
  const bool overlap = !(argc > 6 && std::string(argv[6]) == "after");
  torch::set_num_threads(1);

  Settings s;
  s.model.preset = preset;
  s.train.objective = objective;
  s.train.max_steps = steps;
  comm.set_timeout(s.train.collective_timeout_s);  // the collectives m3ret train makes
  torch::manual_seed(0);
  auto model = std::make_shared<Model>(s, &comm);
  broadcast_module(*model, comm);
  auto optimizer = make_optimizer(*model, s.train);
  auto params = trainable_parameters(*model);
  GradientReducer reducer(params, comm, size_t(s.train.bucket_mb * (1 << 20)));
  model->train();

  double total = 0, exposed = 0;
  for (int step = 0; step < steps; ++step) {
    TrainBatch b;
    b.step = step;
    b.images = torch::rand({batch, 3, 1, size, size});
    for (int64_t i = 0; i < batch; ++i)
      b.seeds.push_back(sample_seed(0, step, rt.rank() * batch + i));
    // Augmentations and masks: on the loader's workers in trainer::train, so
    // outside the timed step here.
    model->objective->prepare(b);
    b.images = torch::Tensor();
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = now();
    m3ret::trainer::zero_gradients(*optimizer);
    auto loss = model->objective->compute(b);
    if (overlap) reducer.arm();
    loss.total.backward();
    reducer.average();
    torch::nn::utils::clip_grad_norm_(params, s.train.clip_grad);
    optimizer->step();
    model->objective->after_optimizer_step(step, s.train.max_steps);
    double dt = now() - t0, wait = reducer.stats().exposed_s;
    MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &wait, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (step >= 2) total += dt, exposed += wait;
  }
  const int counted = std::max(1, steps - 2);
  if (rt.rank() == 0)
    std::printf(
        "ranks %d preset %s objective %s batch/rank %lld size %lld buckets %zu%s | step %.3f s "
        "| %.2f samples/s | exposed comm %.4f s = %.2f %% of the step\n",
        comm.size(), preset.c_str(), objective.c_str(), (long long)batch, (long long)size,
        reducer.bucket_count(), overlap ? "" : " (reduced after backward)", total / counted,
        double(batch * comm.size()) * counted / total, exposed / counted, 100 * exposed / total);
  return 0;
}
