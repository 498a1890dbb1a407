#include "core/blas_threads.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>

namespace m3ret {
namespace {

using SetThreads = void (*)(int);
using GetThreads = int (*)();

SetThreads openblas_set() {
  static const auto f =
      reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  return f;
}

GetThreads openblas_get() {
  static const auto f =
      reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return f;
}

}  // namespace

bool blas_is_openblas() { return openblas_set() != nullptr && openblas_get() != nullptr; }

int blas_threads() { return blas_is_openblas() ? openblas_get()() : 1; }

int split_compute_threads(int n) {
  n = std::max(1, n);
  if (!blas_is_openblas()) return n;
  const char* user = std::getenv("OPENBLAS_NUM_THREADS");
  if (user == nullptr || *user == '\0') openblas_set()(n);
  return 1;
}

}  // namespace m3ret
