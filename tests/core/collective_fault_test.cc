// Collective faults injected through the environment (core/checked_communicator.h):
// a dropped, delayed or corrupted collective on one rank ends the job with a
// clear error on every rank (verification on) or the collective timeout, never
// a silent wrong result or a hang; and the fault specification is checked.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include <fmt/format.h>

#include "core/checked_communicator.h"
#include "core/error.h"
#include "test_util.h"

namespace m3ret {
namespace {

struct Outcome {
  int status;
  std::string output;
};

// Runs the probe on `ranks` ranks with `env` (assignments) in its environment.
// `timeout -s KILL 120` only guards against a hang (status 137 then).
Outcome run_probe(int ranks, const std::string& env, double timeout_s, int calls = 10) {
  const auto cmd = fmt::format(
      "{} timeout -s KILL 120 {} {} -n {} "
      "{} {} {} 2>&1",
      env.empty() ? "" : "env " + env, M3RET_TEST_MPIEXEC, M3RET_TEST_MPIEXEC_FLAGS, ranks,
      M3RET_TEST_PROBE, timeout_s, calls);
  Outcome o;
  o.status = testing::run_command_outside_mpi(cmd, &o.output);
  return o;
}

bool has(const std::string& output, const std::string& text) {
  return output.find(text) != std::string::npos;
}

TEST(CollectiveFault, VerifiedCollectivesAgreeBitForBitOnTwoAndThreeRanks) {
  for (int ranks : {2, 3}) {
    auto o = run_probe(ranks, "M3RET_VERIFY_COLLECTIVES=1", 30);
    EXPECT_EQ(o.status, 0) << ranks << " ranks: " << o.output;
    for (int r = 0; r < ranks; ++r) {
      EXPECT_TRUE(has(o.output, fmt::format("rank {}: sums right", r))) << o.output;
    }
  }
}

TEST(CollectiveFault, ACorruptedResultIsSilentWithoutVerification) {
  // What verification is for: the corrupted rank goes on with a wrong sum.
  auto o = run_probe(2, "M3RET_COLLECTIVE_FAULT=corrupt:rank=1:call=5", 30);
  EXPECT_NE(o.status, 0) << o.output;
  EXPECT_TRUE(has(o.output, "rank 0: sums right")) << o.output;
  EXPECT_TRUE(has(o.output, "rank 1: WRONG SUMS")) << o.output;
}

TEST(CollectiveFault, ACorruptedResultIsTheSameClearErrorOnEveryRank) {
  auto o =
      run_probe(2, "M3RET_COLLECTIVE_FAULT=corrupt:rank=1:call=5 M3RET_VERIFY_COLLECTIVES=1", 30);
  EXPECT_NE(o.status, 0) << o.output;
  EXPECT_NE(o.status, 137) << "hung: " << o.output;
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(has(
        o.output,
        fmt::format(
            "rank {}: error: collective allreduce #5 at step 5 gave different results on different "
            "ranks (16 bytes",
            r)))
        << o.output;
    EXPECT_TRUE(has(o.output, fmt::format("this is rank {} of 2", r))) << o.output;
  }
  EXPECT_FALSE(has(o.output, "sums right")) << o.output;
}

TEST(CollectiveFault, ADroppedCollectiveIsOutOfStepOnEveryRank) {
  auto o = run_probe(2, "M3RET_COLLECTIVE_FAULT=drop:rank=1:call=5 M3RET_VERIFY_COLLECTIVES=1", 30);
  EXPECT_NE(o.status, 0) << o.output;
  EXPECT_NE(o.status, 137) << "hung: " << o.output;
  EXPECT_TRUE(has(o.output,
                  "rank 0: error: collectives out of step at step 5: the ranks are at "
                  "different calls (#5 to #6"))
      << o.output;
  EXPECT_TRUE(has(o.output,
                  "rank 1: error: collectives out of step at step 6: the ranks are at "
                  "different calls (#5 to #6"))
      << o.output;
}

TEST(CollectiveFault, ADroppedCollectiveWithoutVerificationEndsInTheTimeout) {
  // Rank 1 makes one call fewer; rank 0 waits for the last one until the timeout.
  auto o = run_probe(2, "M3RET_COLLECTIVE_FAULT=drop:rank=1:call=5", 3);
  EXPECT_NE(o.status, 0) << o.output;
  EXPECT_NE(o.status, 137) << "hung: " << o.output;
  EXPECT_TRUE(has(o.output, "collective allreduce timed out after 3.0 s at step 10 on rank 0"))
      << o.output;
}

TEST(CollectiveFault, ADelayPastTheTimeoutEndsTheJobNamingTheStep) {
  auto o = run_probe(2, "M3RET_COLLECTIVE_FAULT=delay:rank=1:call=4:seconds=3600", 3);
  EXPECT_NE(o.status, 0) << o.output;
  EXPECT_NE(o.status, 137) << "hung: " << o.output;
  EXPECT_TRUE(has(o.output, "collective allreduce timed out after 3.0 s at step 4 on rank 0"))
      << o.output;
}

TEST(CollectiveFault, ADelayWithinTheTimeoutIsWaitedFor) {
  auto o = run_probe(2,
                     "M3RET_COLLECTIVE_FAULT=delay:rank=0:call=2:seconds=1 "
                     "M3RET_VERIFY_COLLECTIVES=1",
                     60);
  EXPECT_EQ(o.status, 0) << o.output;
  EXPECT_TRUE(has(o.output, "rank 0: sums right")) << o.output;
  EXPECT_TRUE(has(o.output, "rank 1: sums right")) << o.output;
}

TEST(CollectiveFault, AFaultOnARankTheJobDoesNotHaveIsRefused) {
  auto o = run_probe(2, "M3RET_COLLECTIVE_FAULT=drop:rank=2:call=1", 30);
  EXPECT_NE(o.status, 0) << o.output;
  EXPECT_TRUE(has(o.output, "collective fault on rank 2, but the job has 2 rank(s)")) << o.output;
}

TEST(CollectiveFaultSpec, ParsesEveryKind) {
  auto f = parse_collective_fault("delay:rank=1:call=7:seconds=2.5", "X");
  EXPECT_EQ(f.kind, CollectiveFault::Kind::kDelay);
  EXPECT_EQ(f.rank, 1);
  EXPECT_EQ(f.call, 7);
  EXPECT_DOUBLE_EQ(f.seconds, 2.5);
  EXPECT_EQ(parse_collective_fault("drop:call=3:rank=0", "X").kind, CollectiveFault::Kind::kDrop);
  EXPECT_EQ(parse_collective_fault("corrupt:rank=0:call=1", "X").call, 1);
}

TEST(CollectiveFaultSpec, BadSpecificationsNameTheVariableAndThePart) {
  auto message = [](const std::string& spec) {
    try {
      parse_collective_fault(spec, "M3RET_COLLECTIVE_FAULT");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(
      message("explode:rank=1:call=2"),
      "M3RET_COLLECTIVE_FAULT: unknown collective fault 'explode' (known: drop, delay, corrupt)");
  EXPECT_EQ(
      message("drop:rank=1:call=0"),
      "M3RET_COLLECTIVE_FAULT: 'call=0' in 'drop:rank=1:call=0' is not rank=R, call=N (N >= 1) "
      "or seconds=S");
  EXPECT_EQ(message("drop:rank=x:call=2"),
            "M3RET_COLLECTIVE_FAULT: 'rank=x' in 'drop:rank=x:call=2' must be KEY=VALUE with a "
            "number >= 0");
  EXPECT_EQ(message("drop:rank=1"),
            "M3RET_COLLECTIVE_FAULT: 'drop:rank=1' must be drop|corrupt:rank=R:call=N or "
            "delay:rank=R:call=N:seconds=S");
  EXPECT_EQ(message("delay:rank=1:call=2"),
            "M3RET_COLLECTIVE_FAULT: 'delay:rank=1:call=2' must be drop|corrupt:rank=R:call=N or "
            "delay:rank=R:call=N:seconds=S");
  EXPECT_EQ(message("drop:rank=1:call=2:when=3"),
            "M3RET_COLLECTIVE_FAULT: 'when=3' in 'drop:rank=1:call=2:when=3' is not rank=R, call=N "
            "(N >= 1) or seconds=S");
}

}  // namespace
}  // namespace m3ret
