// How a rank's CPU thread budget is split between LibTorch and the BLAS.
//
// Debian's LibTorch calls the generic libblas.so.3. When that is OpenBLAS (the
// setup script installs and selects libopenblas0-pthread), every GEMM runs on
// OpenBLAS's own thread pool, which torch::set_num_threads() does not govern:
// with n torch (OpenMP) threads and n OpenBLAS threads on n cores the two pools
// spin against each other and a ViT training step takes about twice as long
// (docs/performance.md, "Threads"). m3ret therefore gives the budget to
// OpenBLAS, which parallelises the GEMMs that dominate a ViT step, and runs
// LibTorch's own kernels on one thread. Torch-free: OpenBLAS is found at run
// time, so another BLAS (or a LibTorch with MKL) keeps the plain behaviour.
#pragma once

namespace m3ret {

// The number of threads to give torch::set_num_threads() for a budget of n:
// 1 when OpenBLAS is the BLAS (and is set to n threads), n otherwise. An
// OPENBLAS_NUM_THREADS in the environment is the user's choice and is kept
// (OpenBLAS then gets that many, torch still 1).
int split_compute_threads(int n);

// True when the BLAS in this process is OpenBLAS.
bool blas_is_openblas();

// The BLAS's current thread count (1 when unknown).
int blas_threads();

}  // namespace m3ret
