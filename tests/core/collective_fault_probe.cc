// A multi-rank MPI program for the collective-fault tests (not a test itself):
//   collective_fault_probe TIMEOUT_S CALLS
// Every rank all-reduces 4 floats CALLS times under a collective timeout of
// TIMEOUT_S, with the context "step I" for call I, through the runtime's world
// communicator, which M3RET_COLLECTIVE_FAULT / M3RET_VERIFY_COLLECTIVES wrap
// (core/checked_communicator.h). It prints "rank R: sums right" when every
// sum was what the ranks' inputs give, "rank R: WRONG SUMS" (exit 1) when
// not, and "rank R: error: MESSAGE" (exit 2) for an m3ret::Error.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/communicator.h"
#include "core/runtime.h"

namespace {

// Rank r's input for call i: values whose float sum rounds (so that bit-identical
// results on every rank are not a given).
float input(int rank, int call, int j) {
  return 0.1f * float(call) + 0.37f * float(rank) + 0.013f * float(j);
}

}  // namespace

int main(int argc, char** argv) {
  int rank = -1;
  try {
    auto& rt = m3ret::Runtime::init(&argc, &argv);
    rank = rt.rank();
    auto& comm = rt.world_comm();
    comm.set_timeout(argc > 1 ? std::atof(argv[1]) : 5.0);
    const int calls = argc > 2 ? std::atoi(argv[2]) : 10;
    bool right = true;
    for (int call = 1; call <= calls; ++call) {
      comm.set_context(fmt::format("step {}", call));
      std::vector<float> x(4), expect(4, 0.0f);
      for (int j = 0; j < 4; ++j) x[j] = input(rank, call, j);
      comm.allreduce_sum(x.data(), x.size());
      for (int r = 0; r < comm.size(); ++r) {
        for (int j = 0; j < 4; ++j) expect[j] += input(r, call, j);
      }
      for (int j = 0; j < 4; ++j) right = right && std::abs(x[j] - expect[j]) < 1e-4f;
    }
    std::printf("rank %d: %s\n", rank, right ? "sums right" : "WRONG SUMS");
    return right ? 0 : 1;
  } catch (const std::exception& e) {
    std::printf("rank %d: error: %s\n", rank, e.what());
    std::fflush(stdout);
    return 2;
  }
}
