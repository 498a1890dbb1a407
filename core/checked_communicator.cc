#include "core/checked_communicator.h"

#include <zlib.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include <boost/algorithm/string/split.hpp>
#include <fmt/format.h>

#include "core/error.h"

namespace m3ret {

namespace {

const char* op_name(int64_t op) {
  static const char* const names[] = {"?",         "barrier",   "allreduce", "allreduce",
                                      "allreduce", "allreduce", "broadcast", "allgather"};
  return op >= 1 && op <= 7 ? names[op] : names[0];
}

int64_t crc_of(const void* data, size_t bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  while (bytes > 0) {  // zlib's length is a uInt
    const uInt n = static_cast<uInt>(std::min<size_t>(bytes, 1u << 30));
    crc = crc32(crc, p, n);
    p += n;
    bytes -= n;
  }
  return static_cast<int64_t>(crc);
}

CollectiveFault::Kind parse_kind(const std::string& kind, const std::string& origin) {
  if (kind == "drop") return CollectiveFault::Kind::kDrop;
  if (kind == "delay") return CollectiveFault::Kind::kDelay;
  if (kind == "corrupt") return CollectiveFault::Kind::kCorrupt;
  throw Error(
      fmt::format("{}: unknown collective fault '{}' (known: drop, delay, corrupt)", origin, kind));
}

}  // namespace

CollectiveFault parse_collective_fault(const std::string& spec, const std::string& origin) {
  std::vector<std::string> parts;
  boost::algorithm::split(parts, spec, [](char c) { return c == ':'; });
  CollectiveFault f;
  f.kind = parse_kind(parts[0], origin);
  bool has_rank = false, has_call = false, has_seconds = false;
  for (size_t i = 1; i < parts.size(); ++i) {
    const auto eq = parts[i].find('=');
    const std::string key = parts[i].substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : parts[i].substr(eq + 1);
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || !(v >= 0) || v > 1e12) {
      throw Error(fmt::format("{}: '{}' in '{}' must be KEY=VALUE with a number >= 0", origin,
                              parts[i], spec));
    }
    if (key == "rank" && v == int(v)) {
      f.rank = int(v), has_rank = true;
    } else if (key == "call" && v == int64_t(v) && v >= 1) {
      f.call = int64_t(v), has_call = true;
    } else if (key == "seconds") {
      f.seconds = v, has_seconds = true;
    } else {
      throw Error(fmt::format("{}: '{}' in '{}' is not rank=R, call=N (N >= 1) or seconds=S",
                              origin, parts[i], spec));
    }
  }
  if (!has_rank || !has_call || has_seconds != (f.kind == CollectiveFault::Kind::kDelay)) {
    throw Error(
        fmt::format("{}: '{}' must be drop|corrupt:rank=R:call=N or "
                    "delay:rank=R:call=N:seconds=S",
                    origin, spec));
  }
  return f;
}

CheckedCommunicator::CheckedCommunicator(std::unique_ptr<Communicator> inner, CollectiveFault fault,
                                         bool verify)
    : inner_(std::move(inner)), fault_(fault), verify_(verify) {
  if (fault_.kind != CollectiveFault::Kind::kNone && fault_.rank >= inner_->size()) {
    throw Error(fmt::format("collective fault on rank {}, but the job has {} rank(s)", fault_.rank,
                            inner_->size()));
  }
}

void CheckedCommunicator::set_context(const std::string& context) {
  inner_->set_context(context);
  MutexLock lock(context_mutex_);
  context_ = context;
}

std::string CheckedCommunicator::context() {
  MutexLock lock(context_mutex_);
  return context_;
}

template <typename Call>
void CheckedCommunicator::run(Op op, Call&& call) {
  ++calls_;
  const bool faulty = fault_.kind != CollectiveFault::Kind::kNone && calls_ == fault_.call &&
                      inner_->rank() == fault_.rank;
  if (faulty && fault_.kind == CollectiveFault::Kind::kDrop) return;  // as if it had taken part
  if (faulty && fault_.kind == CollectiveFault::Kind::kDelay) {
    std::this_thread::sleep_for(std::chrono::duration<double>(fault_.seconds));
  }
  const auto [data, bytes] = call();
  if (faulty && fault_.kind == CollectiveFault::Kind::kCorrupt && bytes > 0) {
    static_cast<unsigned char*>(data)[bytes - 1] ^= 0x40;  // the last element's top byte
  }
  if (verify_) verify(op, data, bytes);
}

void CheckedCommunicator::verify(Op op, const void* data, size_t bytes) {
  const int64_t mine[4] = {calls_, static_cast<int64_t>(op), static_cast<int64_t>(bytes),
                           bytes > 0 ? crc_of(data, bytes) : 0};
  int64_t v[8];
  for (int i = 0; i < 4; ++i) v[i] = mine[i], v[4 + i] = -mine[i];
  inner_->allreduce_max(v, 8);  // v[i]: the largest value over ranks, -v[4 + i]: the smallest
  if (v[0] != -v[4] || v[1] != -v[5] || v[2] != -v[6]) {
    throw Error(fmt::format(
        "collectives out of step at {}: the ranks are at different calls (#{} to #{}: {} to {}, "
        "{} to {} bytes); a rank dropped or added a collective; this is rank {} of {} at #{} ({})",
        context(), -v[4], v[0], op_name(-v[5]), op_name(v[1]), -v[6], v[2], rank(), size(), calls_,
        op_name(mine[1])));
  }
  if (v[3] != -v[7]) {
    throw Error(fmt::format(
        "collective {} #{} at {} gave different results on different ranks ({} bytes; CRC-32 "
        "from {:08x} to {:08x}): corrupted in transit or on a rank; this is rank {} of {} "
        "(CRC-32 {:08x})",
        op_name(mine[1]), calls_, context(), bytes, -v[7], v[3], rank(), size(), mine[3]));
  }
}

void CheckedCommunicator::barrier() {
  run(Op::kBarrier, [&] {
    inner_->barrier();
    return Bytes{nullptr, 0};
  });
}
void CheckedCommunicator::allreduce_sum(float* data, size_t count) {
  run(Op::kSumF32, [&] {
    inner_->allreduce_sum(data, count);
    return Bytes{data, count * sizeof(float)};
  });
}
void CheckedCommunicator::allreduce_sum(double* data, size_t count) {
  run(Op::kSumF64, [&] {
    inner_->allreduce_sum(data, count);
    return Bytes{data, count * sizeof(double)};
  });
}
void CheckedCommunicator::allreduce_sum(int64_t* data, size_t count) {
  run(Op::kSumI64, [&] {
    inner_->allreduce_sum(data, count);
    return Bytes{data, count * sizeof(int64_t)};
  });
}
void CheckedCommunicator::allreduce_max(int64_t* data, size_t count) {
  run(Op::kMaxI64, [&] {
    inner_->allreduce_max(data, count);
    return Bytes{data, count * sizeof(int64_t)};
  });
}
void CheckedCommunicator::broadcast(void* data, size_t bytes, int root) {
  run(Op::kBroadcast, [&] {
    inner_->broadcast(data, bytes, root);
    return Bytes{data, bytes};
  });
}

std::vector<std::string> CheckedCommunicator::allgather(const std::string& mine) {
  std::vector<std::string> all;
  std::string joined;  // what the ranks compare: every rank's string, length-prefixed
  run(Op::kAllgather, [&] {
    all = inner_->allgather(mine);
    for (const auto& s : all) joined += fmt::format("{}:{}", s.size(), s);
    return Bytes{joined.data(), joined.size()};
  });
  return all;
}

std::unique_ptr<Communicator> checked_from_environment(std::unique_ptr<Communicator> inner) {
  const char* fault = std::getenv("M3RET_COLLECTIVE_FAULT");
  const char* verify = std::getenv("M3RET_VERIFY_COLLECTIVES");
  const bool want_fault = fault && *fault;
  const bool want_verify = verify && *verify && std::string(verify) != "0";
  if (!want_fault && !want_verify) return inner;
  const CollectiveFault f =
      want_fault ? parse_collective_fault(fault, "M3RET_COLLECTIVE_FAULT") : CollectiveFault{};
  return std::make_unique<CheckedCommunicator>(std::move(inner), f, want_verify);
}

}  // namespace m3ret
