// Benchmark (not a test): `m3ret shard`'s work, manifest -> shards, timed.
//
//   mpiexec -n R bench_shard MANIFEST.csv OUT_DIR [THREADS] [SAMPLES_PER_SHARD]
//
// Shards the manifest into a fresh OUT_DIR (removed first) with THREADS
// decoding threads per rank (default 1, so that ranks, not threads, scale),
// SAMPLES_PER_SHARD rows per shard (default 8: shards are dealt round-robin to
// the ranks, so a few big shards of unequal cost would unbalance them), the
// default [preprocess], and prints one line: ranks, threads, rows, samples, wall seconds of the
// slowest rank, samples/s in total and per rank. Compare R = 1 and R = 2
// (docs/performance.md). Peak memory is measured on the real binary with
// /usr/bin/time -v instead (same page).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/fork_server.h"
#include "core/communicator.h"
#include "core/log.h"
#include "core/runtime.h"
#include "data/preprocess.h"
#include "sharding/sharder.h"

int main(int argc, char** argv) {
  m3ret::fork_server::start();  // before any thread, as m3ret does
  auto& rt = m3ret::Runtime::init(&argc, &argv);
  m3ret::log::init(rt.rank());
  if (argc < 3) {
    if (rt.rank() == 0) {
      std::fprintf(stderr,
                   "usage: mpiexec -n R %s MANIFEST.csv OUT_DIR [THREADS] [SAMPLES_PER_SHARD]\n",
                   argv[0]);
    }
    return 2;
  }
  auto& comm = rt.world_comm();
  const std::filesystem::path manifest = argv[1], out = argv[2];
  m3ret::sharding::ShardConfig cfg;
  cfg.threads = argc > 3 ? std::atoll(argv[3]) : 1;
  cfg.samples_per_shard = argc > 4 ? std::atoll(argv[4]) : 8;
  m3ret::data::PreprocessConfig pp;
  if (rt.rank() == 0) std::filesystem::remove_all(out);
  comm.barrier();
  try {
    auto sum = m3ret::sharding::shard_dataset(manifest, out, cfg, pp, comm);
    // The job's time is the slowest rank's (plus rank 0's index, included).
    double seconds = sum.seconds;
    for (const auto& s : comm.allgather(std::to_string(sum.seconds))) {
      seconds = std::max(seconds, std::stod(s));
    }
    if (rt.rank() == 0) {
      const double rate = double(sum.rows) / seconds;
      std::printf(
          "ranks %d threads/rank %lld rows %lld samples %lld seconds %.2f "
          "rows/s %.1f rows/s/rank %.1f\n",
          comm.size(), static_cast<long long>(cfg.threads), static_cast<long long>(sum.rows),
          static_cast<long long>(sum.samples), seconds, rate, rate / comm.size());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", rt.rank(), e.what());
    return 1;
  }
  return 0;
}
