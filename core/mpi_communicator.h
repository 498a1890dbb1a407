// Communicator over an MPI communicator (host memory).
#pragma once

#include <mpi.h>

#include <atomic>
#include <mutex>

#include "core/communicator.h"

namespace m3ret {

class MpiCommunicator : public Communicator {
 public:
  // Does not take ownership of `comm`.
  explicit MpiCommunicator(MPI_Comm comm);
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
  // With a timeout, every collective is a non-blocking MPI call polled with
  // MPI_Test until it completes or the deadline passes; then the message
  // "collective <name> timed out after <s> s at <context> on rank <r>" goes to
  // stderr and the job ends with MPI_Abort(code 3).
  void set_timeout(double seconds) override { timeout_s_ = seconds; }
  void set_context(const std::string& context) override;
  MPI_Comm comm() const { return comm_; }

 private:
  // Completes `req`, respecting the timeout.
  void wait(MPI_Request& req, const char* what);
  void allreduce(void* data, size_t count, size_t elem_bytes, MPI_Datatype type, MPI_Op op);
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  std::atomic<double> timeout_s_{0.0};
  std::mutex context_mutex_;
  std::string context_ = "start";
};

}  // namespace m3ret
