// A dead (kill -9) or stalled rank ends a 2-rank job in bounded time, with a
// message naming the collective and the step (MpiCommunicator's timeout).
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include <fmt/format.h>

#include "test_util.h"

namespace m3ret {
namespace {

struct Outcome {
  int status;
  double seconds;
  std::string output;
};

// count: floats per all-reduce; 4 is a small (polled) collective, kLarge a
// large one (the blocking MPI call under the communicator's watchdog).
constexpr size_t kSmall = 4, kLarge = 1 << 20;

Outcome run_probe(const std::string& mode, double timeout_s, size_t count = kSmall) {
  const auto cmd = fmt::format("timeout -s KILL 120 {} {} -n 2 {} {} {} {}", M3RET_TEST_MPIEXEC,
                               M3RET_TEST_MPIEXEC_FLAGS, M3RET_TEST_PROBE, mode, timeout_s, count);
  const auto t0 = std::chrono::steady_clock::now();
  Outcome o;
  o.status = testing::run_command_outside_mpi(cmd, &o.output);
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return o;
}

TEST(CollectiveTimeout, HealthyRanksFinish) {
  auto o = run_probe("ok", 5);
  EXPECT_EQ(o.status, 0) << o.output;
}

TEST(CollectiveTimeout, StalledRankAbortsTheJobNamingStepAndCollective) {
  auto o = run_probe("stall", 3);
  EXPECT_NE(o.status, 0) << o.output;
  EXPECT_LT(o.seconds, 60) << o.output;  // not the hour rank 1 sleeps
  EXPECT_NE(o.output.find("collective allreduce timed out after 3.0 s at step 7 on rank 0"),
            std::string::npos)
      << o.output;
}

TEST(CollectiveTimeout, KilledRankEndsTheJobInBoundedTime) {
  auto o = run_probe("kill", 3);
  EXPECT_NE(o.status, 0) << o.output;
  EXPECT_LT(o.seconds, 60) << o.output;
}

// Large collectives (gradient buckets) are blocking MPI calls: the watchdog
// thread must end them.
TEST(CollectiveTimeout, LargeCollectivesGiveTheRightSums) {
  auto o = run_probe("ok", 30, kLarge);
  EXPECT_EQ(o.status, 0) << o.output;
  EXPECT_NE(o.output.find("rank 0: sums right"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("rank 1: sums right"), std::string::npos) << o.output;
}

TEST(CollectiveTimeout, StalledRankAbortsALargeCollective) {
  auto o = run_probe("stall", 3, kLarge);
  EXPECT_NE(o.status, 0) << o.output;
  EXPECT_LT(o.seconds, 60) << o.output;
  EXPECT_NE(o.output.find("collective allreduce timed out after 3.0 s at step 7 on rank 0"),
            std::string::npos)
      << o.output;
}

TEST(CollectiveTimeout, KilledRankEndsALargeCollectiveInBoundedTime) {
  auto o = run_probe("kill", 3, kLarge);
  EXPECT_NE(o.status, 0) << o.output;
  EXPECT_LT(o.seconds, 60) << o.output;
}

}  // namespace
}  // namespace m3ret
