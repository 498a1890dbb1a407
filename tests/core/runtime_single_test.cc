// Without mpiexec the runtime behaves as a world of one.
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/communicator.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/runtime.h"
#include "test_util.h"

namespace m3ret {
namespace {

TEST(RuntimeSingle, WorldOfOne) {
  if (std::getenv("OMPI_COMM_WORLD_SIZE")) GTEST_SKIP() << "started by mpiexec";
  auto& rt = Runtime::get();
  EXPECT_EQ(rt.rank(), 0);
  EXPECT_EQ(rt.world(), 1);
  EXPECT_EQ(rt.local_rank(), 0);
  EXPECT_EQ(rt.launcher(), "single");
  float x = 2.5f;
  rt.world_comm().allreduce_sum(&x, 1);
  EXPECT_FLOAT_EQ(x, 2.5f);
}

TEST(Fs, WriteAtomicLeavesNoTemporaries) {
  testing::TempDir dir("fs");
  auto p = dir / "sub" / "file.txt";
  fs::write_atomic(p, "hello");
  fs::write_atomic(p, "world");
  EXPECT_EQ(fs::read_file(p), "world");
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(p.parent_path())) (void)e, ++files;
  EXPECT_EQ(files, 1);
}

TEST(Fs, ChecksumDetectsChange) {
  testing::TempDir dir("fs");
  fs::write_atomic(dir / "a", "abc");
  // CRC-32 of "abc" is 0x352441c2 (standard check value).
  EXPECT_EQ(fs::checksum_file(dir / "a"), "crc32:352441c2");
  EXPECT_EQ(fs::checksum_bytes("abc", 3), "crc32:352441c2");
  fs::write_atomic(dir / "a", "abd");
  EXPECT_NE(fs::checksum_file(dir / "a"), "crc32:352441c2");
  EXPECT_THROW(fs::read_file(dir / "missing"), Error);
}

}  // namespace
}  // namespace m3ret
