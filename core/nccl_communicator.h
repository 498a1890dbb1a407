// Communicator over NCCL, on GPU memory (CUDA builds only: M3RET_WITH_CUDA).
//
// Made collectively over a host communicator (MPI): rank 0's ncclUniqueId is
// broadcast over it, then every rank calls ncclCommInitRank on its GPU
// (cuda:<local rank>, core/runtime.h). Collectives run on the communicator's
// own CUDA stream; allreduce_sum/allreduce_max/broadcast take device pointers
// and return when the collective has completed on that stream (the calling
// thread polls; the compute stream runs on). allgather and barrier go over the
// host communicator.
//
// Collective timeout (set_timeout), as MpiCommunicator: the caller polls
// cudaStreamQuery and ncclCommGetAsyncError, sleeping 10 us doubling to 1 ms
// between polls; at the deadline it prints "m3ret: collective <name> timed
// out after <s> s at <context> on rank <r> of <n> (another rank died or
// stalled); aborting the job", aborts the NCCL communicator (ncclCommAbort)
// and ends the job (MPI_Abort, exit code 3). An NCCL error reported
// asynchronously aborts the communicator and throws m3ret::Error.
#pragma once

#if !M3RET_WITH_CUDA
#error "core/nccl_communicator.h needs a CUDA build (cmake -DM3RET_CUDA=ON)"
#endif

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <string>

#include "core/communicator.h"
#include "core/mutex.h"

namespace m3ret {

class NcclCommunicator : public Communicator {
 public:
  // Collective over `host`'s ranks; `device` is the CUDA device index of this
  // rank. `host` must outlive this object. Throws m3ret::Error naming the
  // failing CUDA/NCCL call.
  NcclCommunicator(Communicator& host, int device);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool device_memory() const override { return true; }
  void barrier() override;
  void allreduce_sum(float* data, size_t count) override;
  void allreduce_sum(double* data, size_t count) override;
  void allreduce_sum(int64_t* data, size_t count) override;
  void allreduce_max(int64_t* data, size_t count) override;
  void broadcast(void* data, size_t bytes, int root) override;
  std::vector<std::string> allgather(const std::string& mine) override;
  void set_timeout(double seconds) override;
  void set_context(const std::string& context) override;

  int device() const { return device_; }
  // The stream the collectives run on.
  cudaStream_t stream() const { return stream_; }
  // The next collectives wait (on the device) for `event`, recorded on
  // another stream (e.g. when a gradient bucket is complete): the host does
  // not wait.
  void wait_event(cudaEvent_t event);

 private:
  void allreduce(void* data, size_t count, ncclDataType_t type, ncclRedOp_t op, const char* what);
  // Waits for the stream to finish the collective `what`, with the timeout.
  void complete(const char* what);
  [[noreturn]] void timed_out(const char* what, double timeout);
  Communicator& host_;
  int rank_ = 0, size_ = 1, device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::atomic<double> timeout_s_{0.0};
  Mutex context_mutex_;
  std::string context_ M3RET_GUARDED_BY(context_mutex_) = "start";
};

}  // namespace m3ret
