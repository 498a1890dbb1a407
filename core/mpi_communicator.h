// Communicator over an MPI communicator (host memory).
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "core/communicator.h"
#include "core/mutex.h"

namespace m3ret {

class MpiCommunicator : public Communicator {
 public:
  // Does not take ownership of `comm`.
  explicit MpiCommunicator(MPI_Comm comm);
  ~MpiCommunicator() override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void barrier() override;
  void allreduce_sum(float* data, size_t count) override;
  void allreduce_sum(double* data, size_t count) override;
  void allreduce_sum(int64_t* data, size_t count) override;
  void allreduce_max(int64_t* data, size_t count) override;
  void broadcast(void* data, size_t bytes, int root) override;
  // Blocking (no timeout): small start-up metadata only.
  std::vector<std::string> allgather(const std::string& mine) override;
  // No collective waits forever for a rank that died or stalled:
  // - A small one (< 64 KiB: metrics, flags, start-up values) is a
  //   non-blocking MPI call completed by polling MPI_Test, sleeping between
  //   tests (10 us doubling to 1 ms), so that a rank waiting for a late
  //   partner leaves its core to the loader's threads.
  // - A large one (gradient buckets, weights) is the blocking MPI call, under a
  //   watchdog thread. Open MPI's blocking collectives move tens of MB about
  //   twice as fast as its non-blocking ones, and a rank that is early keeps
  //   polling so that the transfer starts the moment its partner arrives; the
  //   alternative (a sleeping wait for every rank to arrive, then the data)
  //   measured 4-10 % slower training on 2 ranks (docs/performance.md).
  // With a timeout, a collective not complete by the deadline prints
  // "collective <name> timed out after <s> s at <context> on rank <r>" to
  // stderr and ends the job with MPI_Abort(code 3).
  void set_timeout(double seconds) override { timeout_s_ = seconds; }
  void set_context(const std::string& context) override;
  MPI_Comm comm() const { return comm_; }

 private:
  static constexpr size_t kLargeBytes = 64 * 1024;
  // Completes `req`, respecting the timeout, sleeping while it waits.
  void wait(MPI_Request& req, const char* what);
  [[noreturn]] void timed_out(const char* what, double timeout);
  // Between watch_begin and watch_end (a blocking MPI call), the watchdog
  // thread (started on first use) ends the job when the timeout passes.
  void watch_begin(const char* what);
  void watch_end();
  void watchdog();  // the watchdog thread's body
  void allreduce(void* data, size_t count, size_t elem_bytes, MPI_Datatype type, MPI_Op op);
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  std::atomic<double> timeout_s_{0.0};
  Mutex context_mutex_;
  std::string context_ M3RET_GUARDED_BY(context_mutex_) = "start";

  Mutex watch_mutex_;
  CondVar watch_cv_;
  std::thread watchdog_;  // started under watch_mutex_, joined at destruction
  // The blocking call being watched, if any.
  const char* watch_what_ M3RET_GUARDED_BY(watch_mutex_) = nullptr;
  double watch_timeout_ M3RET_GUARDED_BY(watch_mutex_) = 0;
  std::chrono::steady_clock::time_point watch_deadline_ M3RET_GUARDED_BY(watch_mutex_);
  bool watch_stop_ M3RET_GUARDED_BY(watch_mutex_) = false;
};

}  // namespace m3ret
