#include "eval/gather.h"

#include <cstring>
#include <string>

#include <fmt/format.h>

#include "core/communicator.h"
#include "core/error.h"

namespace m3ret::eval {

std::vector<float> gather_round_robin(Communicator& comm, const std::vector<float>& mine, int64_t N,
                                      int64_t& D) {
  const int size = comm.size();
  comm.allreduce_max(&D, 1);
  const std::string bytes(reinterpret_cast<const char*>(mine.data()), mine.size() * sizeof(float));
  const std::vector<std::string> shares = comm.allgather(bytes);
  std::string problem;
  for (int r = 0; r < size && problem.empty(); ++r) {
    const int64_t rows = round_robin_rows(N, r, size);
    if (static_cast<int64_t>(shares[r].size()) != rows * D * static_cast<int64_t>(sizeof(float)))
      problem = fmt::format("rank {} sent {} bytes for {} rows of dimension {}", r,
                            shares[r].size(), rows, D);
  }
  // Every rank sees the same shares, so every rank reaches the same verdict.
  if (!problem.empty()) throw Error("gathering embeddings: " + problem);
  std::vector<float> out(static_cast<size_t>(N * D));
  for (int r = 0; r < size; ++r) {
    const char* src = shares[r].data();
    const int64_t rows = round_robin_rows(N, r, size);
    for (int64_t j = 0; j < rows; ++j)
      std::memcpy(out.data() + (r + j * size) * D, src + j * D * sizeof(float), D * sizeof(float));
  }
  return out;
}

}  // namespace m3ret::eval
