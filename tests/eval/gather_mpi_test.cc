// Round-robin gather of embeddings over 2 ranks (run under mpiexec -n 2).
#include <gtest/gtest.h>

#include "core/communicator.h"
#include "core/error.h"
#include "core/runtime.h"
#include "eval/gather.h"

namespace m3ret::eval {
namespace {

std::vector<float> my_rows(int64_t N, int64_t D, int rank, int size) {
  std::vector<float> v;
  for (int64_t i = rank; i < N; i += size)
    for (int64_t j = 0; j < D; ++j) v.push_back(static_cast<float>(i * 100 + j));
  return v;
}

TEST(GatherMpi, RestoresTheOriginalOrderOnEveryRank) {
  auto& comm = Runtime::get().world_comm();
  for (int64_t N : {0, 1, 2, 5, 8}) {
    SCOPED_TRACE(N);
    const int64_t D_true = 3;
    int64_t D = N > comm.rank() ? D_true : 0;  // a rank without rows does not know D
    auto all = gather_round_robin(comm, my_rows(N, D_true, comm.rank(), comm.size()), N, D);
    EXPECT_EQ(D, N > 0 ? D_true : 0);
    ASSERT_EQ(static_cast<int64_t>(all.size()), N * D);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < D; ++j) EXPECT_EQ(all[i * D + j], i * 100 + j);
  }
}

TEST(GatherMpi, WrongBufferSizeFailsOnEveryRank) {
  auto& comm = Runtime::get().world_comm();
  int64_t D = 2;
  auto mine = my_rows(4, 2, comm.rank(), comm.size());
  if (comm.rank() == comm.size() - 1) mine.push_back(1.0f);
  EXPECT_THROW(gather_round_robin(comm, mine, 4, D), Error);
}

TEST(GatherMpi, RowCounts) {
  EXPECT_EQ(round_robin_rows(5, 0, 2), 3);
  EXPECT_EQ(round_robin_rows(5, 1, 2), 2);
  EXPECT_EQ(round_robin_rows(1, 1, 2), 0);
  EXPECT_EQ(round_robin_rows(0, 0, 2), 0);
  EXPECT_EQ(round_robin_rows(7, 2, 3), 2);
}

}  // namespace
}  // namespace m3ret::eval
