#include "core/nccl_communicator.h"

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>

#include "core/error.h"

namespace m3ret {

namespace {

void check_cuda(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess)
    throw Error(fmt::format("CUDA {} failed: {}", what, cudaGetErrorString(rc)));
}

void check_nccl(ncclResult_t rc, const char* what) {
  if (rc != ncclSuccess)
    throw Error(fmt::format("NCCL {} failed: {}", what, ncclGetErrorString(rc)));
}

}  // namespace

NcclCommunicator::NcclCommunicator(Communicator& host, int device)
    : host_(host), rank_(host.rank()), size_(host.size()), device_(device) {
  ncclUniqueId id{};
  if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  host_.broadcast(&id, sizeof(id), 0);
  check_cuda(cudaSetDevice(device_), "cudaSetDevice");
  check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  const ncclResult_t rc = ncclCommInitRank(&comm_, size_, id, rank_);
  if (rc != ncclSuccess) {
    cudaStreamDestroy(stream_);
    check_nccl(rc, "ncclCommInitRank");
  }
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_) {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
  }
  if (stream_) cudaStreamDestroy(stream_);
}

void NcclCommunicator::set_timeout(double seconds) {
  timeout_s_ = seconds;
  host_.set_timeout(seconds);
}

void NcclCommunicator::set_context(const std::string& context) {
  {
    MutexLock lock(context_mutex_);
    context_ = context;
  }
  host_.set_context(context);
}

void NcclCommunicator::barrier() { host_.barrier(); }

std::vector<std::string> NcclCommunicator::allgather(const std::string& mine) {
  return host_.allgather(mine);
}

void NcclCommunicator::wait_event(cudaEvent_t event) {
  check_cuda(cudaStreamWaitEvent(stream_, event, 0), "cudaStreamWaitEvent");
}

void NcclCommunicator::timed_out(const char* what, double timeout) {
  std::string context;
  {
    MutexLock lock(context_mutex_);
    context = context_;
  }
  print_collective_timeout(what, timeout, context, rank_, size_);
  ncclCommAbort(comm_);
  comm_ = nullptr;
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::_Exit(3);
}

void NcclCommunicator::complete(const char* what) {
  const double timeout = timeout_s_.load();
  const auto start = std::chrono::steady_clock::now();
  auto pause = std::chrono::microseconds(10);
  for (;;) {
    const cudaError_t q = cudaStreamQuery(stream_);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) check_cuda(q, what);
    ncclResult_t async = ncclSuccess;
    check_nccl(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
    if (async != ncclSuccess && async != ncclInProgress) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
      throw Error(fmt::format("NCCL collective {} failed on rank {} of {}: {}", what, rank_, size_,
                              ncclGetErrorString(async)));
    }
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (timeout > 0 && waited > timeout) timed_out(what, timeout);
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
}

void NcclCommunicator::allreduce(void* data, size_t count, ncclDataType_t type, ncclRedOp_t op,
                                 const char* what) {
  M3RET_CHECK(comm_ != nullptr, "NCCL communicator was aborted");
  check_cuda(cudaSetDevice(device_), "cudaSetDevice");
  check_nccl(ncclAllReduce(data, data, count, type, op, comm_, stream_), what);
  complete(what);
}

void NcclCommunicator::allreduce_sum(float* data, size_t count) {
  allreduce(data, count, ncclFloat32, ncclSum, "allreduce");
}
void NcclCommunicator::allreduce_sum(double* data, size_t count) {
  allreduce(data, count, ncclFloat64, ncclSum, "allreduce");
}
void NcclCommunicator::allreduce_sum(int64_t* data, size_t count) {
  allreduce(data, count, ncclInt64, ncclSum, "allreduce");
}
void NcclCommunicator::allreduce_max(int64_t* data, size_t count) {
  allreduce(data, count, ncclInt64, ncclMax, "allreduce");
}

void NcclCommunicator::broadcast(void* data, size_t bytes, int root) {
  M3RET_CHECK(comm_ != nullptr, "NCCL communicator was aborted");
  check_cuda(cudaSetDevice(device_), "cudaSetDevice");
  check_nccl(ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, stream_), "broadcast");
  complete("broadcast");
}

}  // namespace m3ret
