#include "core/mpi_communicator.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <thread>

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

// MPI counts are int: large buffers go in pieces of at most this many elements.
constexpr size_t kMaxCount = static_cast<size_t>(INT_MAX) / 2;

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

void MpiCommunicator::set_context(const std::string& context) {
  std::lock_guard<std::mutex> lock(context_mutex_);
  context_ = context;
}

void MpiCommunicator::wait(MPI_Request& req, const char* what) {
  const double timeout = timeout_s_.load();
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration<double>(timeout);
  int done = 0;
  for (;;) {
    check_mpi(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    const auto now = std::chrono::steady_clock::now();
    if (now > deadline) break;
    // Spin for the first 50 us (small collectives), then poll every 20 us.
    if (now - start > std::chrono::microseconds(50))
      std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  std::string context;
  {
    std::lock_guard<std::mutex> lock(context_mutex_);
    context = context_;
  }
  std::fprintf(stderr,
               "m3ret: collective %s timed out after %.1f s at %s on rank %d of %d (another rank "
               "died or stalled); aborting the job\n",
               what, timeout, context.c_str(), rank_, size_);
  std::fflush(stderr);
  MPI_Abort(comm_, 3);
  std::_Exit(3);
}

void MpiCommunicator::allreduce(void* data, size_t count, size_t elem_bytes, MPI_Datatype type,
                                MPI_Op op) {
  auto* p = static_cast<char*>(data);
  for (size_t off = 0; off < count; off += kMaxCount) {
    const int n = static_cast<int>(std::min(kMaxCount, count - off));
    void* piece = p + off * elem_bytes;
    if (timeout_s_.load() <= 0) {
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, piece, n, type, op, comm_), "allreduce");
    } else {
      MPI_Request req;
      check_mpi(MPI_Iallreduce(MPI_IN_PLACE, piece, n, type, op, comm_, &req), "allreduce");
      wait(req, "allreduce");
    }
  }
}

void MpiCommunicator::barrier() {
  if (timeout_s_.load() <= 0) return check_mpi(MPI_Barrier(comm_), "barrier");
  MPI_Request req;
  check_mpi(MPI_Ibarrier(comm_, &req), "barrier");
  wait(req, "barrier");
}

void MpiCommunicator::allreduce_sum(float* data, size_t count) {
  allreduce(data, count, sizeof(float), MPI_FLOAT, MPI_SUM);
}
void MpiCommunicator::allreduce_sum(double* data, size_t count) {
  allreduce(data, count, sizeof(double), MPI_DOUBLE, MPI_SUM);
}
void MpiCommunicator::allreduce_sum(int64_t* data, size_t count) {
  allreduce(data, count, sizeof(int64_t), MPI_INT64_T, MPI_SUM);
}
void MpiCommunicator::allreduce_max(int64_t* data, size_t count) {
  allreduce(data, count, sizeof(int64_t), MPI_INT64_T, MPI_MAX);
}

void MpiCommunicator::broadcast(void* data, size_t bytes, int root) {
  auto* p = static_cast<char*>(data);
  for (size_t off = 0; off < bytes; off += kMaxCount) {
    const int n = static_cast<int>(std::min(kMaxCount, bytes - off));
    if (timeout_s_.load() <= 0) {
      check_mpi(MPI_Bcast(p + off, n, MPI_BYTE, root, comm_), "bcast");
    } else {
      MPI_Request req;
      check_mpi(MPI_Ibcast(p + off, n, MPI_BYTE, root, comm_, &req), "bcast");
      wait(req, "bcast");
    }
  }
}

std::vector<std::string> MpiCommunicator::allgather(const std::string& mine) {
  // Small and rare (start-up metadata): blocking, outside the timeout.
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
