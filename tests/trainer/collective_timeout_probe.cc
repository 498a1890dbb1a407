// A 2-rank MPI program for the collective-timeout test (not a test itself):
//   collective_timeout_probe MODE TIMEOUT_S
// Rank 1 fails (MODE "kill": SIGKILL on itself, as kill -9 does; "stall":
// sleeps for an hour) while rank 0 all-reduces under a timeout of TIMEOUT_S
// with the context "step 7". Rank 0 must end the job; "ok" makes both ranks
// all-reduce normally and exit 0.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "core/communicator.h"
#include "core/runtime.h"

int main(int argc, char** argv) {
  auto& rt = m3ret::Runtime::init(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "ok";
  auto& comm = rt.world_comm();
  comm.set_timeout(argc > 2 ? std::atof(argv[2]) : 2.0);
  comm.set_context("step 7");
  float x[4] = {1, 2, 3, 4};
  comm.allreduce_sum(x, 4);  // everyone is alive here
  if (rt.rank() == 1 && mode == "kill") std::raise(SIGKILL);
  if (rt.rank() == 1 && mode == "stall") std::this_thread::sleep_for(std::chrono::hours(1));
  comm.allreduce_sum(x, 4);
  std::printf("rank %d: %g\n", rt.rank(), x[0]);
  return x[0] == 4.0f ? 0 : 1;
}
