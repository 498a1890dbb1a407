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

// `seconds` after `t`; never for seconds <= 0 (no timeout).
std::chrono::steady_clock::time_point deadline_after(std::chrono::steady_clock::time_point t,
                                                     double seconds) {
  if (seconds <= 0) return std::chrono::steady_clock::time_point::max();
  return t + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                 std::chrono::duration<double>(seconds));
}

}  // namespace

void Communicator::broadcast(std::string& s, int root) {
  int64_t n = static_cast<int64_t>(s.size());
  broadcast(&n, sizeof(n), root);
  s.resize(static_cast<size_t>(n));
  if (n > 0) broadcast(s.data(), s.size(), root);
}

void print_collective_timeout(const char* what, double timeout_s, const std::string& context,
                              int rank, int size) {
  const std::string line = fmt::format(
      "m3ret: collective {} timed out after {:.1f} s at {} on rank {} of {} (another rank died or "
      "stalled); aborting the job\n",
      what, timeout_s, context, rank, size);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  // A launcher that ends the job on it (slurm/pretrain.sbatch) names a file on
  // the shared file system: the line is appended there too.
  const char* marker = std::getenv("M3RET_COLLECTIVE_TIMEOUT_FILE");
  if (FILE* f = marker && *marker ? std::fopen(marker, "a") : nullptr) {
    std::fputs(line.c_str(), f);
    std::fclose(f);
  }
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
  MutexLock lock(context_mutex_);
  context_ = context;
}

void MpiCommunicator::wait(MPI_Request& req, const char* what) {
  const double timeout = timeout_s_.load();
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = deadline_after(start, timeout);
  // Spin for the first 50 us (a partner that is about to arrive), then sleep
  // between tests, 10 us doubling to 1 ms, so that a rank waiting for a late
  // partner leaves its core to the threads that compute.
  auto pause = std::chrono::microseconds(10);
  int done = 0;
  for (;;) {
    check_mpi(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    const auto now = std::chrono::steady_clock::now();
    if (now > deadline) break;
    if (now - start > std::chrono::microseconds(50)) {
      std::this_thread::sleep_for(pause);
      pause = std::min(2 * pause, std::chrono::microseconds(1000));
    }
  }
  timed_out(what, timeout);
}

void MpiCommunicator::timed_out(const char* what, double timeout) {
  std::string context;
  {
    MutexLock lock(context_mutex_);
    context = context_;
  }
  print_collective_timeout(what, timeout, context, rank_, size_);
  MPI_Abort(comm_, 3);
  std::_Exit(3);
}

MpiCommunicator::~MpiCommunicator() {
  {
    MutexLock lock(watch_mutex_);
    watch_stop_ = true;
  }
  watch_cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
}

void MpiCommunicator::watch_begin(const char* what) {
  const double timeout = timeout_s_.load();
  if (timeout <= 0) return;
  MutexLock lock(watch_mutex_);
  if (!watchdog_.joinable()) watchdog_ = std::thread([this] { watchdog(); });
  watch_what_ = what;
  watch_timeout_ = timeout;
  watch_deadline_ = deadline_after(std::chrono::steady_clock::now(), timeout);
  watch_cv_.notify_all();
}

void MpiCommunicator::watch_end() {
  MutexLock lock(watch_mutex_);
  watch_what_ = nullptr;
}

void MpiCommunicator::watchdog() {
  const char* what = nullptr;
  double timeout = 0;
  {
    MutexLock lock(watch_mutex_);
    for (;;) {
      if (watch_stop_) return;
      if (watch_what_ == nullptr) {
        watch_cv_.wait(lock);
      } else if (std::chrono::steady_clock::now() < watch_deadline_) {
        watch_cv_.wait_until(lock, watch_deadline_);
      } else {
        what = watch_what_;
        timeout = watch_timeout_;
        break;
      }
    }
  }
  timed_out(what, timeout);
}

void MpiCommunicator::allreduce(void* data, size_t count, size_t elem_bytes, MPI_Datatype type,
                                MPI_Op op) {
  auto* p = static_cast<char*>(data);
  for (size_t off = 0; off < count; off += kMaxCount) {
    const int n = static_cast<int>(std::min(kMaxCount, count - off));
    void* piece = p + off * elem_bytes;
    const size_t bytes = static_cast<size_t>(n) * elem_bytes;
    if (bytes < kLargeBytes || size_ == 1) {
      MPI_Request req;
      check_mpi(MPI_Iallreduce(MPI_IN_PLACE, piece, n, type, op, comm_, &req), "allreduce");
      wait(req, "allreduce");
    } else {
      watch_begin("allreduce");
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, piece, n, type, op, comm_), "allreduce");
      watch_end();
    }
  }
}

void MpiCommunicator::barrier() {
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
    if (static_cast<size_t>(n) < kLargeBytes || size_ == 1) {
      MPI_Request req;
      check_mpi(MPI_Ibcast(p + off, n, MPI_BYTE, root, comm_, &req), "bcast");
      wait(req, "bcast");
    } else {
      watch_begin("bcast");
      check_mpi(MPI_Bcast(p + off, n, MPI_BYTE, root, comm_), "bcast");
      watch_end();
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
