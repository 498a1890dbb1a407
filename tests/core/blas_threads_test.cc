// The thread split between LibTorch and OpenBLAS (core/blas_threads.h). This
// test links the system's libblas.so.3 like Debian's LibTorch does; with
// libopenblas0-pthread selected (setup.sh) that is OpenBLAS.
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/blas_threads.h"

extern "C" void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
                       const float*, const int*, const float*, const int*, const float*, float*,
                       const int*);

namespace m3ret {
namespace {

TEST(BlasThreads, OpenBlasGetsTheBudgetAndTorchOneThread) {
  // Keep the reference to the BLAS so that the linker does not drop it.
  const int n = 2;
  const float one = 1, zero = 0, a[4] = {1, 2, 3, 4}, b[4] = {1, 0, 0, 1};
  float c[4] = {};
  sgemm_("N", "N", &n, &n, &n, &one, a, &n, b, &n, &zero, c, &n);
  EXPECT_EQ(c[3], 4.0f);
  if (!blas_is_openblas())
    GTEST_SKIP() << "libblas.so.3 is not OpenBLAS here (setup.sh selects it)";
  ::unsetenv("OPENBLAS_NUM_THREADS");
  EXPECT_EQ(split_compute_threads(2), 1);
  EXPECT_EQ(blas_threads(), 2);
  EXPECT_EQ(split_compute_threads(0), 1);  // a budget below 1 means 1
  EXPECT_EQ(blas_threads(), 1);
  // The user's OPENBLAS_NUM_THREADS is kept.
  ::setenv("OPENBLAS_NUM_THREADS", "1", 1);
  EXPECT_EQ(split_compute_threads(4), 1);
  EXPECT_EQ(blas_threads(), 1);
  ::unsetenv("OPENBLAS_NUM_THREADS");
}

}  // namespace
}  // namespace m3ret
