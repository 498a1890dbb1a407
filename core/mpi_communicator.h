// Communicator over an MPI communicator (host memory).
#pragma once

#include <mpi.h>

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
  std::vector<std::string> allgather(const std::string& mine) override;
  MPI_Comm comm() const { return comm_; }

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

}  // namespace m3ret
