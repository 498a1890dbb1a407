// MPI runtime and communicator on 2 ranks.
#include <gtest/gtest.h>

#include <numeric>

#include "core/communicator.h"
#include "core/runtime.h"

namespace m3ret {
namespace {

TEST(RuntimeMpi, RanksAndWorld) {
  auto& rt = Runtime::get();
  ASSERT_EQ(rt.world(), 2) << "run under mpiexec -n 2";
  EXPECT_GE(rt.rank(), 0);
  EXPECT_LT(rt.rank(), 2);
  EXPECT_EQ(rt.local_world(), 2);  // both ranks on this node
  EXPECT_EQ(rt.local_rank(), rt.rank());
  EXPECT_EQ(rt.is_root(), rt.rank() == 0);
  EXPECT_EQ(rt.launcher(), "mpi");
}

TEST(RuntimeMpi, AllreduceSumsOverRanks) {
  auto& comm = Runtime::get().world_comm();
  std::vector<float> f(1000);
  std::iota(f.begin(), f.end(), static_cast<float>(comm.rank()));
  comm.allreduce_sum(f.data(), f.size());
  for (size_t i = 0; i < f.size(); ++i) ASSERT_FLOAT_EQ(f[i], 2.0f * i + 1.0f);
  std::vector<double> d = {comm.rank() + 0.5};
  comm.allreduce_sum(d.data(), 1);
  EXPECT_DOUBLE_EQ(d[0], 2.0);
  EXPECT_EQ(comm.sum(int64_t{comm.rank() + 1}), 3);
  int64_t m = comm.rank() * 10;
  comm.allreduce_max(&m, 1);
  EXPECT_EQ(m, 10);
}

TEST(RuntimeMpi, BroadcastAndAllgather) {
  auto& comm = Runtime::get().world_comm();
  std::string s = comm.rank() == 1 ? std::string("from rank one") : std::string("x");
  comm.broadcast(s, 1);
  EXPECT_EQ(s, "from rank one");
  auto all = comm.allgather(std::string(comm.rank() + 1, 'a' + comm.rank()));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], "a");
  EXPECT_EQ(all[1], "bb");
}

TEST(RuntimeMpi, AllIsACollectiveAnd) {
  auto& comm = Runtime::get().world_comm();
  EXPECT_TRUE(comm.all(true));
  EXPECT_FALSE(comm.all(comm.rank() == 0));
}

}  // namespace
}  // namespace m3ret
