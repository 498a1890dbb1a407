#include "sharding/loader.h"

#include <optional>

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
      first_(sampler.position()),
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
  using Batch = DistributedSampler::Batch;
  pool_ = std::make_unique<OrderedPool<Batch, LoadedBatch>>(
      static_cast<size_t>(cfg_.workers), static_cast<size_t>(cfg_.prefetch) + 1,
      [this](size_t) { return std::optional<Batch>(sampler_.next()); },
      [this](Batch b) {
        LoadedBatch loaded = load(b);
        if (transform_) transform_(loaded);
        return loaded;
      });
}

int64_t Loader::position() const { return first_ + static_cast<int64_t>(pool_->position()); }

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

LoadedBatch Loader::next() {
  auto batch = pool_->next();  // the sampler's stream is endless
  return std::move(*batch);
}

}  // namespace m3ret::sharding
