// Collective faults on demand, and a check that every rank got the same result.
//
// CheckedCommunicator wraps another communicator. It can
// - inject one fault, as a flaky cluster has them: on one rank, at its N-th
//   collective call, drop the call (the rank goes on as if it had taken part),
//   delay it by S seconds, or corrupt its result (bit 6 of the last byte of the rank's
//   buffer flipped after the call);
// - verify every collective: after each call the ranks all-reduce its
//   sequence number, kind, size and a CRC-32 of the result, and every rank
//   throws the same m3ret::Error when they differ ("ranks out of step" for a
//   dropped or extra call, "results differ" for a corruption). This costs one
//   small collective per collective; it relies on the collectives giving
//   bit-identical results on every rank, which Open MPI's and NCCL's
//   all-reduce and broadcast algorithms do.
// A delay past the collective timeout, or a drop without verification, ends
// in the wrapped communicator's timeout message instead.
//
// The environment turns them on for any m3ret process (docs/reliability.md,
// "Collective faults"):
//   M3RET_COLLECTIVE_FAULT="drop|delay|corrupt:rank=R:call=N[:seconds=S]"
//   M3RET_VERIFY_COLLECTIVES=1
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/communicator.h"
#include "core/mutex.h"

namespace m3ret {

struct CollectiveFault {
  enum class Kind { kNone, kDrop, kDelay, kCorrupt };
  Kind kind = Kind::kNone;
  int rank = 0;          // the rank whose call fails
  int64_t call = 1;      // its 1-based collective call number (barriers included)
  double seconds = 0.0;  // kDelay: how long the call is held back
};

// Parses "KIND:rank=R:call=N[:seconds=S]"; throws m3ret::Error naming `origin`
// (e.g. the environment variable) and the part at fault.
CollectiveFault parse_collective_fault(const std::string& spec, const std::string& origin);

class CheckedCommunicator : public Communicator {
 public:
  CheckedCommunicator(std::unique_ptr<Communicator> inner, CollectiveFault fault, bool verify);
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  bool device_memory() const override { return inner_->device_memory(); }
  void barrier() override;
  void allreduce_sum(float* data, size_t count) override;
  void allreduce_sum(double* data, size_t count) override;
  void allreduce_sum(int64_t* data, size_t count) override;
  void allreduce_max(int64_t* data, size_t count) override;
  void broadcast(void* data, size_t bytes, int root) override;
  std::vector<std::string> allgather(const std::string& mine) override;
  void set_timeout(double seconds) override { inner_->set_timeout(seconds); }
  void set_context(const std::string& context) override;
  int64_t calls() const { return calls_; }

 private:
  enum class Op : int64_t {
    kBarrier = 1,
    kSumF32,
    kSumF64,
    kSumI64,
    kMaxI64,
    kBroadcast,
    kAllgather
  };
  struct Bytes {
    void* data;
    size_t size;
  };
  // Runs `call` (the wrapped collective; it returns its result's bytes) as
  // collective number calls_ + 1, with the fault if it is this one, and then
  // the verification, if on.
  template <typename Call>
  void run(Op op, Call&& call);
  void verify(Op op, const void* data, size_t bytes);
  std::string context();

  std::unique_ptr<Communicator> inner_;
  CollectiveFault fault_;
  bool verify_;
  int64_t calls_ = 0;  // collectives made so far (one thread at a time, as every communicator)
  Mutex context_mutex_;
  std::string context_ M3RET_GUARDED_BY(context_mutex_) = "start";
};

// Wraps `inner` in a CheckedCommunicator when M3RET_COLLECTIVE_FAULT or
// M3RET_VERIFY_COLLECTIVES is set; returns it unchanged otherwise.
std::unique_ptr<Communicator> checked_from_environment(std::unique_ptr<Communicator> inner);

}  // namespace m3ret
