// Exact inner-product search with LibTorch: the gallery is held as one float32
// [N, D] row-major buffer (add() appends to it; search() views it as a
// tensor); queries are processed in blocks of `query_block` rows against
// gallery blocks of `gallery_block` rows (one matrix product each, BLAS
// through LibTorch), each similarity row then scanned (rows in parallel with
// at::parallel_for) into a running top-k heap per query: most scores cost one
// comparison with the query's current k-th best. Memory beyond the gallery
// itself: query_block * (gallery_block + 3k) floats, whatever N is.
// Ties between equal scores go to the lower id.
#pragma once

#include "eval/index.h"

namespace m3ret::eval {

struct ExactIndexOptions {
  int64_t query_block = 1024;
  int64_t gallery_block = 8192;
};

std::unique_ptr<Index> make_exact_index(int64_t dim, ExactIndexOptions options = {});

}  // namespace m3ret::eval
