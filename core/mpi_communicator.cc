#include "core/mpi_communicator.h"

#include <algorithm>
#include <climits>

#include <fmt/format.h>

#include "core/error.h"

namespace m3ret {

namespace {

void check_mpi(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw Error(fmt::format("MPI {} failed: {}", what, std::string(msg, len)));
  }
}

// MPI counts are int: split large buffers into pieces.
template <class T>
void allreduce_chunked(MPI_Comm comm, T* data, size_t count, MPI_Datatype type, MPI_Op op) {
  constexpr size_t kMax = static_cast<size_t>(INT_MAX) / 2;
  for (size_t off = 0; off < count; off += kMax) {
    int n = static_cast<int>(std::min(kMax, count - off));
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data + off, n, type, op, comm), "allreduce");
  }
}

}  // namespace

void Communicator::broadcast(std::string& s, int root) {
  int64_t n = static_cast<int64_t>(s.size());
  broadcast(&n, sizeof(n), root);
  s.resize(static_cast<size_t>(n));
  if (n > 0) broadcast(s.data(), s.size(), root);
}

bool Communicator::all(bool ok) {
  int64_t bad = ok ? 0 : 1;
  allreduce_sum(&bad, 1);
  return bad == 0;
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm) : comm_(comm) {
  check_mpi(MPI_Comm_rank(comm_, &rank_), "comm_rank");
  check_mpi(MPI_Comm_size(comm_, &size_), "comm_size");
}

void MpiCommunicator::barrier() { check_mpi(MPI_Barrier(comm_), "barrier"); }

void MpiCommunicator::allreduce_sum(float* data, size_t count) {
  allreduce_chunked(comm_, data, count, MPI_FLOAT, MPI_SUM);
}
void MpiCommunicator::allreduce_sum(double* data, size_t count) {
  allreduce_chunked(comm_, data, count, MPI_DOUBLE, MPI_SUM);
}
void MpiCommunicator::allreduce_sum(int64_t* data, size_t count) {
  allreduce_chunked(comm_, data, count, MPI_INT64_T, MPI_SUM);
}
void MpiCommunicator::allreduce_max(int64_t* data, size_t count) {
  allreduce_chunked(comm_, data, count, MPI_INT64_T, MPI_MAX);
}

void MpiCommunicator::broadcast(void* data, size_t bytes, int root) {
  constexpr size_t kMax = static_cast<size_t>(INT_MAX) / 2;
  auto* p = static_cast<char*>(data);
  for (size_t off = 0; off < bytes; off += kMax) {
    int n = static_cast<int>(std::min(kMax, bytes - off));
    check_mpi(MPI_Bcast(p + off, n, MPI_BYTE, root, comm_), "bcast");
  }
}

std::vector<std::string> MpiCommunicator::allgather(const std::string& mine) {
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(size_);
  check_mpi(MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, comm_), "allgather");
  std::vector<int> displs(size_, 0);
  for (int i = 1; i < size_; ++i) displs[i] = displs[i - 1] + lens[i - 1];
  std::string all(static_cast<size_t>(displs.back() + lens.back()), '\0');
  check_mpi(MPI_Allgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(),
                           MPI_CHAR, comm_),
            "allgatherv");
  std::vector<std::string> out(size_);
  for (int i = 0; i < size_; ++i) out[i] = all.substr(displs[i], lens[i]);
  return out;
}

}  // namespace m3ret
