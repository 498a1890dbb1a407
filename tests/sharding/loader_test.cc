// Loader: batches in step order with the right pixels, resume position,
// worker errors rethrown on the caller, clean shutdown, transforms
// (augmentation) on the workers in parallel.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "core/error.h"
#include "sharding/loader.h"

namespace m3ret::sharding {
namespace {

// An in-memory ShardSet: pixel bytes are a function of (modality, index);
// reading `poison` throws; reads take a little time in random order.
class FakeShards : public ShardSet {
 public:
  explicit FakeShards(int64_t poison = -1) : poison_(poison) {
    infos_ = {{"xray", "xray", 40, 1, 1, 4, 4}, {"ct", "ct", 30, 1, 3, 2, 2}};
  }
  const std::vector<ModalityInfo>& modalities() const override { return infos_; }
  const ModalityInfo& info(const std::string& m) const override {
    for (const auto& i : infos_) {
      if (i.name == m) return i;
    }
    throw Error("no modality " + m);
  }
  const SampleMeta& meta(const std::string&, int64_t) const override { return meta_; }
  void read_pixels(const std::string& m, int64_t index, uint8_t* out) const override {
    if (index == poison_) throw InputError("fake/" + std::to_string(index), "poisoned sample");
    // Not a wait: reads of different lengths make the workers finish out of
    // step order, which is what the loader must put back in order.
    std::this_thread::sleep_for(std::chrono::microseconds((index * 37) % 300));
    const auto& i = info(m);
    for (int64_t p = 0; p < i.C * i.T * i.H * i.W; ++p) out[p] = pixel(m, index, p);
    {
      std::lock_guard<std::mutex> lock(reads_mu_);
      ++reads;
    }
    reads_cv_.notify_all();
  }
  // Waits until `n` samples were read; false if they were not within a minute
  // (a broken loader fails the test instead of hanging it).
  bool wait_for_reads(int64_t n) const {
    std::unique_lock<std::mutex> lock(reads_mu_);
    return reads_cv_.wait_for(lock, std::chrono::minutes(1), [&] { return reads.load() >= n; });
  }
  const std::vector<std::string>& label_vocabulary() const override { return vocab_; }
  static uint8_t pixel(const std::string& m, int64_t index, int64_t p) {
    return static_cast<uint8_t>(index * 3 + p + (m == "ct" ? 100 : 0));
  }
  mutable std::atomic<int64_t> reads{0};

 private:
  int64_t poison_;
  mutable std::mutex reads_mu_;
  mutable std::condition_variable reads_cv_;
  std::vector<ModalityInfo> infos_;
  SampleMeta meta_;
  std::vector<std::string> vocab_;
};

std::map<std::string, std::vector<int64_t>> pool(const ShardSet& s) {
  std::map<std::string, std::vector<int64_t>> p;
  for (const auto& m : s.modalities()) {
    for (int64_t i = 0; i < m.count; ++i) p[m.name].push_back(i);
  }
  return p;
}

TEST(Loader, ReturnsTheSamplersBatchesInOrderWithTheirPixels) {
  FakeShards shards;
  DistributedSampler reference(pool(shards), 3, 1, 2, 42, {"uniform", 1.0});
  Loader loader2(shards, DistributedSampler(pool(shards), 3, 1, 2, 42, {"uniform", 1.0}),
                 {4, 3, "uniform", 1.0});
  for (int step = 0; step < 50; ++step) {
    EXPECT_EQ(loader2.position(), step);
    LoadedBatch b = loader2.next();
    auto want = reference.next();
    ASSERT_EQ(b.step, step);
    ASSERT_EQ(b.modality, want.modality);
    ASSERT_EQ(b.indices, want.indices);
    const auto& info = shards.info(b.modality);
    ASSERT_EQ(b.B, 3);
    ASSERT_EQ(std::vector<int64_t>({b.C, b.T, b.H, b.W}),
              std::vector<int64_t>({info.C, info.T, info.H, info.W}));
    const int64_t numel = info.C * info.T * info.H * info.W;
    ASSERT_EQ(b.pixels.size(), size_t(3 * numel));
    for (int64_t i = 0; i < 3; ++i) {
      for (int64_t p = 0; p < numel; ++p) {
        ASSERT_EQ(b.pixels[i * numel + p], FakeShards::pixel(b.modality, b.indices[i], p));
      }
    }
  }
  EXPECT_EQ(loader2.position(), 50);
}

TEST(Loader, ResumesFromASavedPosition) {
  FakeShards shards;
  DistributedSampler s(pool(shards), 2, 0, 1, 9);
  std::vector<LoadedBatch> ref;
  int64_t saved = 0;
  {
    Loader loader(shards, s, {2, 2, "proportional", 2.0});
    for (int i = 0; i < 12; ++i) ref.push_back(loader.next());
    saved = 7;
  }
  DistributedSampler resumed(pool(shards), 2, 0, 1, 9);
  resumed.set_position(saved);
  Loader loader(shards, std::move(resumed), {3, 4, "proportional", 2.0});
  EXPECT_EQ(loader.position(), saved);
  for (int i = int(saved); i < 12; ++i) {
    auto b = loader.next();
    EXPECT_EQ(b.step, i);
    EXPECT_EQ(b.indices, ref[i].indices);
    EXPECT_EQ(b.pixels, ref[i].pixels);
  }
}

TEST(Loader, RethrowsWorkerErrorsOnTheCaller) {
  FakeShards shards(/*poison=*/5);
  Loader loader(shards, DistributedSampler(pool(shards), 8, 0, 1, 1), {2, 2, "uniform", 1.0});
  bool thrown = false;
  for (int i = 0; i < 100 && !thrown; ++i) {
    try {
      loader.next();
    } catch (const InputError& e) {
      thrown = true;
      EXPECT_THAT(e.what(), ::testing::HasSubstr("poisoned"));
    }
  }
  EXPECT_TRUE(thrown);
  EXPECT_THROW(loader.next(), InputError);  // sticky
}

TEST(Loader, PrefetchIsBoundedAndShutdownIsClean) {
  FakeShards shards;
  auto loader = std::make_unique<Loader>(shards, DistributedSampler(pool(shards), 2, 0, 1, 1),
                                         LoaderConfig{3, 2, "uniform", 1.0});
  // Before any next() the workers claim the steps up to prefetch (2) beyond
  // the next one: 2 + 1 batches of 2 samples, then they wait.
  const int64_t bound = (2 + 1) * 2;
  ASSERT_TRUE(shards.wait_for_reads(bound)) << "only " << shards.reads.load() << " reads";
  loader.reset();  // joins the workers while they wait
  // None read more: a loader that claimed beyond the bound would have gone on
  // reading until it was stopped.
  EXPECT_EQ(shards.reads.load(), bound);
}

TEST(Loader, TransformRunsOnTheWorkersInParallelAndKeepsTheOrder) {
  FakeShards shards;
  std::atomic<int> running{0}, most{0};
  std::mutex mu;
  std::set<std::thread::id> threads;
  std::condition_variable overlapped;
  // An "augmentation": inverts the pixels and crops every sample to its first
  // pixel. Until two transforms have run at the same time, each waits for
  // another to start (up to a minute: transforms that never run in parallel
  // fail the test instead of hanging it).
  BatchTransform invert_and_crop = [&](LoadedBatch& b) {
    const int now = ++running;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {
    }
    {
      std::unique_lock<std::mutex> lock(mu);
      threads.insert(std::this_thread::get_id());
      overlapped.notify_all();
      overlapped.wait_for(lock, std::chrono::minutes(1), [&] { return most.load() >= 2; });
    }
    const int64_t numel = b.C * b.T * b.H * b.W;
    std::vector<uint8_t> out;
    for (int64_t i = 0; i < b.B; ++i) out.push_back(uint8_t(255 - b.pixels[i * numel]));
    b.pixels = std::move(out);
    b.C = b.T = b.H = b.W = 1;
    --running;
  };
  DistributedSampler reference(pool(shards), 3, 0, 1, 5);
  Loader loader(shards, DistributedSampler(pool(shards), 3, 0, 1, 5), {4, 4, "proportional", 2.0},
                invert_and_crop);
  for (int step = 0; step < 16; ++step) {
    LoadedBatch b = loader.next();
    auto want = reference.next();
    ASSERT_EQ(b.step, step);
    ASSERT_EQ(b.indices, want.indices);
    ASSERT_EQ(b.pixels.size(), 3u);
    ASSERT_EQ(b.H, 1);
    for (int64_t i = 0; i < 3; ++i) {
      EXPECT_EQ(b.pixels[i], uint8_t(255 - FakeShards::pixel(b.modality, b.indices[i], 0)));
    }
  }
  EXPECT_GE(most.load(), 2) << "transforms never overlapped";
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_GE(threads.size(), 2u);
  EXPECT_EQ(threads.count(std::this_thread::get_id()), 0u) << "ran on the caller";
}

TEST(Loader, RethrowsTransformErrorsOnTheCaller) {
  FakeShards shards;
  Loader loader(shards, DistributedSampler(pool(shards), 2, 0, 1, 1), {2, 2, "uniform", 1.0},
                [](LoadedBatch& b) {
                  if (b.step == 3) throw Error("augmentation failed at step 3");
                });
  for (int i = 0; i < 3; ++i) EXPECT_EQ(loader.next().step, i);
  EXPECT_THAT([&] { loader.next(); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("step 3")));
}

}  // namespace
}  // namespace m3ret::sharding
