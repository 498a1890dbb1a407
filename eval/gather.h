// Reassembling rows that were dealt to ranks round-robin (used by embed()).
#pragma once

#include <cstdint>
#include <vector>

namespace m3ret {
class Communicator;
}

namespace m3ret::eval {

// Row i of an N x D matrix lives on rank i % size as that rank's (i / size)-th
// local row. `mine`: this rank's rows, row-major, (rows on this rank) * D floats.
// Collective: returns the whole N*D matrix in row order on every rank. D may be
// 0 on ranks with no row; the result uses the largest D over ranks.
// Throws m3ret::Error (on every rank) when a rank's buffer has the wrong size.
std::vector<float> gather_round_robin(Communicator& comm, const std::vector<float>& mine, int64_t N,
                                      int64_t& D);

// Number of rows that rank `rank` of `size` holds under that dealing.
inline int64_t round_robin_rows(int64_t N, int rank, int size) {
  return rank < N ? (N - rank + size - 1) / size : 0;
}

}  // namespace m3ret::eval
