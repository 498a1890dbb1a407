// A 2-rank MPI program for the collective-timeout test (not a test itself):
//   collective_timeout_probe MODE TIMEOUT_S [COUNT]
// Rank 1 fails (MODE "kill": SIGKILL on itself, as kill -9 does; "stall":
// sleeps for an hour) while rank 0 all-reduces COUNT floats (default 4: a
// small collective, polled; 1 Mi = 4 MiB is a large one, the blocking MPI call
// under the watchdog) under a timeout of TIMEOUT_S with the context "step 7".
// Rank 0 must end the job; "ok" makes both ranks all-reduce normally and exit
// 0 when the sums are right.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "core/communicator.h"
#include "core/runtime.h"

int main(int argc, char** argv) {
  auto& rt = m3ret::Runtime::init(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "ok";
  auto& comm = rt.world_comm();
  comm.set_timeout(argc > 2 ? std::atof(argv[2]) : 2.0);
  comm.set_context("step 7");
  const size_t count = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 4;
  std::vector<float> x(count);
  for (size_t i = 0; i < count; ++i) x[i] = float(i % 7);
  comm.allreduce_sum(x.data(), count);  // everyone is alive here
  if (rt.rank() == 1 && mode == "kill") std::raise(SIGKILL);
  // The stalled peer under test: rank 1 stays alive but never joins the next
  // collective (this sleep is the behaviour, not a wait for something).
  if (rt.rank() == 1 && mode == "stall") std::this_thread::sleep_for(std::chrono::hours(1));
  comm.allreduce_sum(x.data(), count);
  bool right = true;
  for (size_t i = 0; i < count; ++i) right = right && x[i] == float(4 * (i % 7));
  std::printf("rank %d: %s\n", rt.rank(), right ? "sums right" : "WRONG SUMS");
  return right ? 0 : 1;
}
