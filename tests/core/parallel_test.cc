// core/parallel.h: every item exactly once, the first error rethrown after the
// workers stop taking items, any thread count.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "core/parallel.h"

namespace m3ret {
namespace {

TEST(ParallelFor, RunsEveryItemExactlyOnceWhateverTheThreadCount) {
  for (size_t threads : {0, 1, 3, 64}) {
    for (size_t n : {0, 1, 7, 500}) {
      std::vector<std::atomic<int>> runs(n);
      parallel_for(n, threads, [&](size_t i) { ++runs[i]; });
      for (size_t i = 0; i < n; ++i)
        ASSERT_EQ(runs[i].load(), 1) << "n " << n << " threads " << threads << " item " << i;
    }
  }
}

TEST(ParallelFor, TheFirstErrorStopsFurtherItemsAndReachesTheCaller) {
  std::atomic<int> ran{0};
  try {
    parallel_for(10000, 4, [&](size_t i) {
      ++ran;
      if (i == 3) throw std::runtime_error("item 3 failed");
    });
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "item 3 failed");
  }
  EXPECT_LE(ran.load(), 10000);
  // Workers stop taking items once one failed: with one thread, exactly the
  // items up to the failing one ran (with more, how many depends on timing).
  ran = 0;
  EXPECT_THROW(parallel_for(100, 1,
                            [&](size_t i) {
                              ++ran;
                              if (i == 9) throw std::runtime_error("x");
                            }),
               std::runtime_error);
  EXPECT_EQ(ran.load(), 10);
}

}  // namespace
}  // namespace m3ret
