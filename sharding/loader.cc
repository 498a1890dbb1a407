#include "sharding/loader.h"

#include <fmt/format.h>

#include "core/error.h"

namespace m3ret::sharding {

Loader::Loader(const ShardSet& shards, DistributedSampler sampler, LoaderConfig cfg,
               BatchTransform transform)
    : shards_(shards),
      cfg_(std::move(cfg)),
      transform_(std::move(transform)),
      seed_(sampler.seed()),
      rank_(sampler.rank()),
      sampler_(std::move(sampler)) {
  if (cfg_.workers < 1)
    throw Error(fmt::format("loader.workers must be >= 1 (got {})", cfg_.workers));
  if (cfg_.prefetch < 1) {
    throw Error(fmt::format("loader.prefetch must be >= 1 (got {})", cfg_.prefetch));
  }
  for (const auto& [m, w] : sampler_.weights()) {
    if (!shards_.has(m))
      throw Error(fmt::format("loader: sampler modality '{}' is not in the shards", m));
  }
  next_ = sampler_.position();
  threads_.reserve(static_cast<size_t>(cfg_.workers));
  for (int64_t i = 0; i < cfg_.workers; ++i) threads_.emplace_back([this] { work(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

int64_t Loader::position() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_;
}

LoadedBatch Loader::load(const DistributedSampler::Batch& b) const {
  const ModalityInfo& info = shards_.info(b.modality);
  LoadedBatch out;
  out.step = b.step;
  out.modality = b.modality;
  out.epoch = b.epoch;
  out.indices = b.indices;
  out.B = static_cast<int64_t>(b.indices.size());
  out.C = info.C;
  out.T = info.T;
  out.H = info.H;
  out.W = info.W;
  const int64_t numel = info.C * info.T * info.H * info.W;
  out.pixels.resize(static_cast<size_t>(out.B * numel));
  out.clip_starts.assign(static_cast<size_t>(out.B), 0);
  const int64_t starts = info.clip_starts();
  for (int64_t i = 0; i < out.B; ++i) {
    if (starts > 1)
      out.clip_starts[size_t(i)] = clip_start(seed_, b.step, rank_ * out.B + i, starts);
    shards_.read_clip(b.modality, b.indices[static_cast<size_t>(i)], out.clip_starts[size_t(i)],
                      out.pixels.data() + i * numel);
  }
  return out;
}

void Loader::work() {
  while (true) {
    DistributedSampler::Batch b;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock,
               [&] { return stop_ || error_ || sampler_.position() - next_ <= cfg_.prefetch; });
      if (stop_ || error_) return;
      try {
        b = sampler_.next();
      } catch (...) {
        error_ = std::current_exception();
        cv_.notify_all();
        return;
      }
    }
    try {
      LoadedBatch loaded = load(b);
      if (transform_) transform_(loaded);
      std::lock_guard<std::mutex> lock(mu_);
      ready_.emplace(loaded.step, std::move(loaded));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
    }
    cv_.notify_all();
  }
}

LoadedBatch Loader::next() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return error_ || ready_.count(next_) > 0; });
  if (error_) std::rethrow_exception(error_);
  auto it = ready_.find(next_);
  LoadedBatch b = std::move(it->second);
  ready_.erase(it);
  ++next_;
  lock.unlock();
  cv_.notify_all();
  return b;
}

}  // namespace m3ret::sharding
