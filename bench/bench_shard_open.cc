// Benchmark (not a test): what opening a shard folder costs a rank.
//
//   bench_shard_open SHARDS [REPEATS]
//
// Times ShardSet::open (index.json parsed, every listed shard's metadata read:
// ids, labels, groups, splits, sources, checksums) and a DistributedSampler
// over every sample (the trainer's pool), REPEATS times (default 3), and
// prints index.json's size, the shard count, the samples, the fastest open
// and sampler seconds, and the resident memory an opened set holds (VmRSS
// after the open minus before, from /proc/self/status, measured while a first
// set opened beforehand stays open).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/fork_server.h"
#include "sharding/loader.h"
#include "sharding/sampler.h"
#include "sharding/shard_set.h"

using namespace m3ret::sharding;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A /proc/self/status field in kB ("VmRSS", "VmHWM").
long status_kb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::atol(line.c_str() + field.size() + 1);
  }
  return -1;
}

int64_t shard_count(const std::filesystem::path& dir) {
  std::ifstream in(dir / "index.json");
  const auto j = nlohmann::json::parse(in);
  int64_t n = 0;
  for (const auto& m : j.at("modalities")) n += static_cast<int64_t>(m.at("shards").size());
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  m3ret::fork_server::start();  // before any thread, as m3ret does
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s SHARDS [REPEATS]\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  const int repeats = argc > 2 ? std::max(1, std::atoi(argv[2])) : 3;
  try {
    double open_s = 1e30, sampler_s = 1e30;
    long held_kb = 0;
    int64_t samples = 0;
    // A first set, kept open, so that the library's own start-up is not counted and the
    // memory measured below is what one more open set holds (nothing freed to reuse).
    auto warm = ShardSet::open(dir);
    for (int r = 0; r < repeats; ++r) {
      const long before = status_kb("VmRSS");
      auto t0 = std::chrono::steady_clock::now();
      auto shards = ShardSet::open(dir);
      open_s = std::min(open_s, seconds_since(t0));
      if (r == 0) held_kb = status_kb("VmRSS") - before;  // later opens reuse freed memory
      std::map<std::string, std::vector<int64_t>> pool;
      samples = 0;
      for (const auto& m : shards->modalities()) {
        for (int64_t i = 0; i < m.count; ++i) pool[m.name].push_back(i);
        samples += m.count;
      }
      t0 = std::chrono::steady_clock::now();
      DistributedSampler sampler(pool, 32, 0, 1, 7, LoaderConfig{}.mixing_config());
      sampler_s = std::min(sampler_s, seconds_since(t0));
    }
    std::printf(
        "index.json %lld bytes, %lld shards, %lld samples: open %.3f s, sampler %.3f s, "
        "open set holds %.1f MB (peak RSS %.1f MB)\n",
        static_cast<long long>(std::filesystem::file_size(dir / "index.json")),
        static_cast<long long>(shard_count(dir)), static_cast<long long>(samples), open_s,
        sampler_s, held_kb / 1024.0, status_kb("VmHWM") / 1024.0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_shard_open: %s\n", e.what());
    return 1;
  }
  return 0;
}
