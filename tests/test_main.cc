// main() of every test binary: MPI (works with and without mpiexec), logging,
// and on multi-rank runs only rank 0 prints GoogleTest's output.
#include <gtest/gtest.h>

#include "core/communicator.h"
#include "core/fork_server.h"
#include "core/log.h"
#include "core/runtime.h"

int main(int argc, char** argv) {
  m3ret::fork_server::start();  // before any thread (as m3ret's main does)
  auto& rt = m3ret::Runtime::init(&argc, &argv);
  m3ret::log::init(rt.rank());
  ::testing::InitGoogleTest(&argc, argv);
  if (rt.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = RUN_ALL_TESTS();
  // A failure on any rank fails the test on every rank.
  bool ok = rt.world_comm().all(rc == 0);
  return ok ? 0 : 1;
}
