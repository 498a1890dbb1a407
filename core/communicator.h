// Collective operations over a group of ranks.
//
// One interface, so that tests can inject faults and the trainer can use an
// NCCL implementation for device memory (core/nccl_communicator.h, CUDA
// builds). All calls are collective: every rank of the group must make the
// same calls in the same order. Buffers are `count` elements of host memory,
// or of device memory where device_memory() is true; nothing is retained
// after the call returns. One thread at a time per communicator makes collective calls
// (the trainer's gradient thread calls while the main thread waits for it);
// set_context() may be called from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace m3ret {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // True when the buffers of allreduce_* and broadcast are GPU memory (NCCL);
  // false for host memory (MPI).
  virtual bool device_memory() const { return false; }

  virtual void barrier() = 0;
  // In-place element-wise sum over ranks. data: `count` elements.
  virtual void allreduce_sum(float* data, size_t count) = 0;
  virtual void allreduce_sum(double* data, size_t count) = 0;
  virtual void allreduce_sum(int64_t* data, size_t count) = 0;
  // In-place max over ranks.
  virtual void allreduce_max(int64_t* data, size_t count) = 0;
  // Copies `bytes` bytes from `root` into every rank's `data`.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // Every rank contributes one string; every rank receives all, by rank.
  virtual std::vector<std::string> allgather(const std::string& mine) = 0;

  // Collective timeout: a collective not complete after `seconds` (another
  // rank died or stalled) ends the whole job with a message naming the
  // collective and the context. 0 = wait forever (the default).
  virtual void set_timeout(double seconds) { (void)seconds; }
  // Names what the ranks are doing (e.g. "step 12"), for the timeout message.
  virtual void set_context(const std::string& context) { (void)context; }

  // Conveniences built on the above.
  void broadcast(std::string& s, int root);
  int64_t sum(int64_t v) {
    allreduce_sum(&v, 1);
    return v;
  }
  double sum(double v) {
    allreduce_sum(&v, 1);
    return v;
  }
  // True on every rank iff `ok` is true on every rank (a collective status).
  bool all(bool ok);
};

// Prints the collective timeout message of every communicator to stderr:
// "m3ret: collective <what> timed out after <s> s at <context> on rank <r> of
// <n> (another rank died or stalled); aborting the job", and appends the same line
// to the file $M3RET_COLLECTIVE_TIMEOUT_FILE when that is set.
void print_collective_timeout(const char* what, double timeout_s, const std::string& context,
                              int rank, int size);

}  // namespace m3ret
