// FAISS indices (Debian's libfaiss, CPU): IndexFlatIP, IndexHNSWFlat and
// IndexIVFFlat with the inner-product metric. FAISS parallelises search over
// queries with OpenMP (omp_set_num_threads / OMP_NUM_THREADS).
#pragma once

#include "eval/index.h"

namespace m3ret::eval {

// `spec` is a parsed factory string of type flat, hnsw or ivf.
std::unique_ptr<Index> make_faiss_index(const IndexSpec& spec, int64_t dim, int64_t expected_count);
// Reads dir/faiss.index; throws m3ret::Error naming it when missing, unreadable
// or of another dimension or size than expected.
std::unique_ptr<Index> load_faiss_index(const IndexSpec& spec, const std::filesystem::path& dir,
                                        int64_t n, int64_t dim);

}  // namespace m3ret::eval
