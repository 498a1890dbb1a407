// Benchmark (not a test): how many samples/s the prefetching loader supplies.
//
//   bench_loader SHARDS [BATCH] [STEPS] [MIXING]
//
// For 1 and 2 worker threads (and the number of hardware threads when it is
// larger): a DistributedSampler over every sample of SHARDS (one rank, per-rank
// batch BATCH, default 32; mixing proportional), a Loader with prefetch 4, 3
// warm-up batches, then STEPS batches (default 60) timed. Prints samples/s and
// MB/s of uncompressed pixels per worker count. Compare with the samples/s of a
// ViT-S training step (docs/performance.md gives both commands).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/fork_server.h"
#include "sharding/loader.h"
#include "sharding/sampler.h"
#include "sharding/shard_set.h"

using namespace m3ret::sharding;

int main(int argc, char** argv) {
  m3ret::fork_server::start();  // before any thread, as m3ret does
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s SHARDS [BATCH] [STEPS] [MIXING]\n", argv[0]);
    return 2;
  }
  const int64_t batch = argc > 2 ? std::atoll(argv[2]) : 32;
  const int64_t steps = argc > 3 ? std::atoll(argv[3]) : 60;
  const std::string mixing = argc > 4 ? argv[4] : "proportional";
  try {
    auto shards = ShardSet::open(argv[1]);
    std::map<std::string, std::vector<int64_t>> pool;
    for (const auto& m : shards->modalities()) {
      for (int64_t i = 0; i < m.count; ++i) pool[m.name].push_back(i);
      std::printf("%s: %lld samples of [%lld, %lld, %lld, %lld]\n", m.name.c_str(),
                  static_cast<long long>(m.count), static_cast<long long>(m.C),
                  static_cast<long long>(m.T), static_cast<long long>(m.H),
                  static_cast<long long>(m.W));
    }
    std::set<int64_t> workers = {1, 2, int64_t(std::thread::hardware_concurrency())};
    for (int64_t w : workers) {
      if (w < 1) continue;
      LoaderConfig cfg;
      cfg.workers = w;
      cfg.prefetch = 4;
      cfg.mixing = mixing;
      DistributedSampler sampler(pool, batch, 0, 1, 7, cfg.mixing_config());
      Loader loader(*shards, std::move(sampler), cfg);
      for (int i = 0; i < 3; ++i) loader.next();
      const auto t0 = std::chrono::steady_clock::now();
      int64_t samples = 0;
      double bytes = 0;
      for (int64_t i = 0; i < steps; ++i) {
        LoadedBatch b = loader.next();
        samples += b.B;
        bytes += double(b.pixels.size());
      }
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("workers %lld batch %lld steps %lld: %.1f samples/s, %.1f MB/s, %.3f s\n",
                  static_cast<long long>(w), static_cast<long long>(batch),
                  static_cast<long long>(steps), double(samples) / s, bytes / s / 1e6, s);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
