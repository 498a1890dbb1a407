// Benchmark (not a test): gradient all-reduce of the trainer vs a plain
// MPI_Allreduce of the same bytes.
//
//   mpiexec -n 2 bench_allreduce [PRESET] [REPS] [BUCKET_MB]
//
// Takes the trainable parameters of a ViT encoder of PRESET (default "small",
// ViT-S, 22 M parameters), fills their gradients, and times REPS (default 20)
// calls of GradientReducer::average() (BUCKET_MB buckets (default 25), each
// all-reduced and divided by the world size; the gradients live in the
// buckets, as after the first training step) with the communicator set up as
// `m3ret train` sets it (train.collective_timeout_s), against REPS plain
// MPI_Allreduce calls on one float buffer of the same size (the target's
// reference), and against plain MPI_Allreduce calls on buffers of the bucket
// sizes (the same chunks without the reducer). Prints the median seconds and
// algorithmic bandwidth (bytes / s) of each and the ratios.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/communicator.h"
#include "core/runtime.h"
#include "model/config.h"
#include "model/vit.h"
#include "trainer/grad_sync.h"
#include "trainer/schedule.h"

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

int main(int argc, char** argv) {
  auto& rt = m3ret::Runtime::init(&argc, &argv);
  auto& comm = rt.world_comm();
  const std::string preset = argc > 1 ? argv[1] : "small";
  const int reps = argc > 2 ? std::atoi(argv[2]) : 20;
  const double bucket_mb = argc > 3 ? std::atof(argv[3]) : 25;
  torch::set_num_threads(1);

  m3ret::trainer::ModelConfig mc;
  mc.preset = preset;
  m3ret::trainer::Encoder enc(mc.spec());
  auto params = m3ret::trainer::trainable_parameters(enc);
  int64_t numel = 0;
  for (auto& p : params) {
    p.mutable_grad() = torch::randn_like(p);
    numel += p.numel();
  }
  const double bytes = double(numel) * 4;
  comm.set_timeout(m3ret::trainer::TrainConfig{}.collective_timeout_s);
  m3ret::trainer::GradientReducer reducer(params, comm, size_t(bucket_mb * (1 << 20)));

  std::vector<float> flat(size_t(numel), 1.0f);
  std::vector<std::vector<float>> chunks;
  for (size_t b = 0; b < reducer.bucket_count(); ++b) {
    int64_t n = 0;
    for (size_t k : reducer.bucket_params(b)) n += params[k].numel();
    chunks.emplace_back(size_t(n), 1.0f);
  }
  std::vector<double> t_sync, t_plain, t_chunks;
  for (int r = 0; r < reps + 2; ++r) {  // 2 warm-up rounds
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = now();
    MPI_Allreduce(MPI_IN_PLACE, flat.data(), int(numel), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    const double plain = now() - t0;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = now();
    for (auto& c : chunks)
      MPI_Allreduce(MPI_IN_PLACE, c.data(), int(c.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    const double plain_chunks = now() - t0;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = now();
    reducer.average();
    const double sync = now() - t0;
    if (r >= 2) t_plain.push_back(plain), t_chunks.push_back(plain_chunks), t_sync.push_back(sync);
  }
  const double ms = median(t_sync), mp = median(t_plain), mpc = median(t_chunks);
  if (rt.rank() == 0)
    std::printf(
        "ranks %d preset %s params %lld bytes %.0f buckets %zu | plain MPI_Allreduce %.4f s "
        "%.2f GB/s | plain, bucket-sized pieces %.4f s %.2f GB/s | GradientReducer %.4f s "
        "%.2f GB/s | ratio %.3f (to pieces %.3f)\n",
        comm.size(), preset.c_str(), (long long)numel, bytes, reducer.bucket_count(), mp,
        bytes / mp / 1e9, mpc, bytes / mpc / 1e9, ms, bytes / ms / 1e9, mp / ms, mpc / ms);
  return 0;
}
