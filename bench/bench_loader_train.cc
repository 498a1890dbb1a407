// Benchmark (not a test): samples/s of the loader as `m3ret train` uses it,
// i.e. reading AND the trainer's per-sample work on the worker threads
// (uint8 -> float, MAE views and masks, SimDINO multi-crop views:
// trainer/batch_transform.h).
//
//   bench_loader_train SHARDS [OBJECTIVE] [BATCH] [STEPS] [PRESET]
//
// OBJECTIVE default "mae+simdino" (default [mae]/[simdino] settings: 4 local
// crops), per-rank BATCH default 32, STEPS timed batches (default 20) after 2
// warm-up batches, PRESET default "small" (the crops depend only on the
// tubelet, the preset only sizes the unused model). For 1 and 2 worker threads
// (and the hardware threads when more): prints samples/s. Compare with the
// samples/s of a training step (bench_train or metrics.jsonl), as in
// docs/performance.md.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/fork_server.h"
#include "model/objective.h"
#include "model/settings.h"
#include "sharding/loader.h"
#include "sharding/sampler.h"
#include "sharding/shard_set.h"
#include "trainer/batch_transform.h"

using namespace m3ret;

int main(int argc, char** argv) {
  m3ret::fork_server::start();  // before any thread, as m3ret does
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s SHARDS [OBJECTIVE] [BATCH] [STEPS] [PRESET]\n", argv[0]);
    return 2;
  }
  const std::string objective = argc > 2 ? argv[2] : "mae+simdino";
  const int64_t batch = argc > 3 ? std::atoll(argv[3]) : 32;
  const int64_t steps = argc > 4 ? std::atoll(argv[4]) : 20;
  const std::string preset = argc > 5 ? argv[5] : "small";
  try {
    auto shards = sharding::ShardSet::open(argv[1]);
    std::map<std::string, std::vector<int64_t>> pool;
    for (const auto& m : shards->modalities())
      for (int64_t i = 0; i < m.count; ++i) pool[m.name].push_back(i);
    trainer::Settings s;
    s.model.preset = preset;
    s.train.objective = objective;
    trainer::Model model(s, nullptr);
    std::set<int64_t> workers = {1, 2, int64_t(std::thread::hardware_concurrency())};
    for (int64_t w : workers) {
      if (w < 1) continue;
      sharding::LoaderConfig cfg;
      cfg.workers = w;
      cfg.prefetch = 4;
      sharding::DistributedSampler sampler(pool, batch, 0, 1, 7, cfg.mixing_config());
      sharding::Loader loader(*shards, std::move(sampler), cfg,
                              trainer::make_batch_transform(model.objective, 7, 0, 1));
      for (int i = 0; i < 2; ++i) loader.next();
      std::map<std::string, int64_t> per_modality;
      const auto t0 = std::chrono::steady_clock::now();
      int64_t samples = 0;
      for (int64_t i = 0; i < steps; ++i) {
        auto b = loader.next();
        samples += b.B;
        per_modality[b.modality] += 1;
      }
      const double sec =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::string mix;
      for (auto& [m, n] : per_modality) mix += " " + m + "=" + std::to_string(n);
      std::printf(
          "workers %lld objective %s batch %lld steps %lld: %.1f samples/s, %.3f s (batches:%s)\n",
          static_cast<long long>(w), objective.c_str(), static_cast<long long>(batch),
          static_cast<long long>(steps), double(samples) / sec, sec, mix.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
