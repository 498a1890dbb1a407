// Sharding's memory does not grow with the manifest. This binary replaces the
// global operator new and delete to count the bytes the process holds on the
// heap and their peak; holding every manifest row (as reading the whole
// manifest into memory does, about 1 KB per row here) fails these tests.
#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <new>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/communicator.h"
#include "core/fs.h"
#include "core/runtime.h"
#include "data/data_test_util.h"
#include "data/manifest.h"
#include "sharding/sharder.h"
#include "test_util.h"

namespace {

std::atomic<int64_t> g_live{0}, g_peak{0};

void* note_new(void* p) {
  if (p == nullptr) return p;
  const int64_t live =
      g_live.fetch_add(int64_t(malloc_usable_size(p))) + int64_t(malloc_usable_size(p));
  int64_t peak = g_peak.load();
  while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
  }
  return p;
}

void note_delete(void* p) {
  if (p != nullptr) g_live.fetch_sub(int64_t(malloc_usable_size(p)));
  std::free(p);
}

// The peak heap bytes `f` added to what was held when it started.
template <class F>
int64_t heap_peak_added(F f) {
  const int64_t before = g_live.load();
  g_peak.store(before);
  f();
  return g_peak.load() - before;
}

}  // namespace

void* operator new(size_t n) {
  void* p = note_new(std::malloc(n ? n : 1));
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* operator new[](size_t n) { return operator new(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return note_new(std::malloc(n ? n : 1));
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return note_new(std::malloc(n ? n : 1));
}
void operator delete(void* p) noexcept { note_delete(p); }
void operator delete[](void* p) noexcept { note_delete(p); }
void operator delete(void* p, size_t) noexcept { note_delete(p); }
void operator delete[](void* p, size_t) noexcept { note_delete(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { note_delete(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { note_delete(p); }

namespace m3ret::sharding {
namespace {

namespace stdfs = std::filesystem;

// A manifest of `rows` rows over `files` real images: row i is
// c<i / files>/img<i % files>.png, where every c<k> is a symlink to img/.
stdfs::path manifest_of(const stdfs::path& dir, int rows, int files) {
  stdfs::create_directories(dir / "img");
  for (int f = 0; f < files; ++f) {
    if (stdfs::exists(dir / fmt::format("img/img{}.png", f))) continue;
    std::vector<uint8_t> pixels(16 * 16);
    for (size_t p = 0; p < pixels.size(); ++p) pixels[p] = uint8_t(p * 7 + f * 31);
    data::testutil::write_image<uint8_t>(dir / fmt::format("img/img{}.png", f), pixels, 16, 16);
  }
  std::string csv = "path,modality,labels,group,split\n";
  for (int i = 0; i < rows; ++i) {
    const auto copy = dir / fmt::format("c{}", i / files);
    if (!stdfs::exists(copy)) stdfs::create_directory_symlink(dir / "img", copy);
    csv +=
        fmt::format("c{}/img{}.png,ultrasound,label{},patient-{}-with-a-longer-group-name,train\n",
                    i / files, i % files, i % 5, i);
  }
  const auto path = dir / fmt::format("manifest-{}.csv", rows);
  fs::write_atomic(path, csv);
  return path;
}

// The streamed pass over the manifest holds 8 bytes per row (its path hash)
// plus buffers, where the whole manifest in memory holds about 1 KB per row.
TEST(ShardMemory, ScanningTheManifestHoldsAFewBytesPerRow) {
  testing::TempDir tmp("shard-memory-scan");
  const int rows = 50000;
  const auto manifest = manifest_of(tmp.path(), rows, 8);
  int64_t seen = 0;
  const int64_t scan = heap_peak_added([&] {
    data::scan_manifest(manifest,
                        [&](const data::ManifestRow&, const data::RowPosition&) { ++seen; });
  });
  EXPECT_EQ(seen, rows);
  const int64_t bound = int64_t(rows) * 24 + (1 << 20);  // the hash vector as it grows, + 1 MiB
  EXPECT_LT(scan, bound) << scan / rows << " bytes per row";
  // The counter sees rows that are held: the whole manifest in memory is over the bound.
  const int64_t whole = heap_peak_added([&] { data::read_manifest(manifest); });
  EXPECT_GT(whole, 4 * bound) << whole / rows << " bytes per row";
}

// `m3ret shard`'s peak heap for ten times the rows grows by what its shards
// need (a plan entry and an index entry each: well under 100 bytes per row
// at 64 rows per shard), not by the rows.
TEST(ShardMemory, ShardingPeakHeapDoesNotGrowWithTheManifest) {
  testing::TempDir tmp("shard-memory");
  auto& comm = Runtime::get().world_comm();
  ASSERT_EQ(comm.size(), 1);
  ShardConfig cfg;
  cfg.samples_per_shard = 64;
  cfg.threads = 1;
  cfg.compression = 1;
  data::PreprocessConfig pp;
  pp.image_size = 16;
  const int small_rows = 640, large_rows = 6400;
  const auto small = manifest_of(tmp.path(), small_rows, 8);
  const auto large = manifest_of(tmp.path(), large_rows, 8);
  ShardSummary s1, s2;
  const int64_t peak_small =
      heap_peak_added([&] { s1 = shard_dataset(small, tmp / "s-small", cfg, pp, comm); });
  const int64_t peak_large =
      heap_peak_added([&] { s2 = shard_dataset(large, tmp / "s-large", cfg, pp, comm); });
  EXPECT_EQ(s1.samples, small_rows);
  EXPECT_EQ(s2.samples, large_rows);
  EXPECT_EQ(s2.shards, large_rows / 64);
  const int64_t per_row = (peak_large - peak_small) / (large_rows - small_rows);
  std::printf("peak heap: %lld bytes for %d rows, %lld bytes for %d rows (%lld per added row)\n",
              static_cast<long long>(peak_small), small_rows, static_cast<long long>(peak_large),
              large_rows, static_cast<long long>(per_row));
  EXPECT_LT(per_row, 100);
}

}  // namespace
}  // namespace m3ret::sharding
