// TensorBoard event files, read back by TensorBoard's own reader.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/utc.h"
#include "test_util.h"
#include "core/tensorboard.h"
#include "trainer/tensorboard_reader.h"

namespace m3ret::trainer {
namespace {

namespace stdfs = std::filesystem;

// The published CRC-32C check value and TFRecord's masking.
TEST(TensorBoard, Crc32cIsCastagnoli) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  const uint32_t c = crc32c("abc", 3);
  EXPECT_EQ(masked_crc32c("abc", 3), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

}  // namespace

namespace {

TEST(TensorBoard, ItsOwnReaderReadsTheScalarsBack) {
  testing::TempDir dir("tensorboard");
  {
    EventWriter w(dir / "tb");
    w.scalars(1, 1.7e9, {{"loss/loss", 0.5}, {"train/lr", 1e-3}});
    w.scalars(2, 1.7e9 + 1, {{"loss/loss", 0.25}, {"train/lr", 2e-3}});
  }
  std::string why;
  auto got = read_with_tensorboard(dir / "tb", &why);
  if (got.is_null()) GTEST_SKIP() << why;
  ASSERT_FALSE(got.contains("error")) << why;
  ASSERT_TRUE(got.contains("loss/loss")) << got.dump();
  EXPECT_EQ(got["loss/loss"], nlohmann::json::parse("[[1, 0.5], [2, 0.25]]"));
  ASSERT_EQ(got["train/lr"].size(), 2u);
  EXPECT_FLOAT_EQ(got["train/lr"][1][1].get<float>(), 2e-3f);
}

TEST(UtcTimestamp, IsoFormatInUtcWithOptionalFraction) {
  using namespace std::chrono;
  const system_clock::time_point t{seconds{1764620000} + milliseconds{123}};
  EXPECT_EQ(utc_timestamp(t), "2025-12-01T20:13:20Z");
  EXPECT_EQ(utc_timestamp(t, 3), "2025-12-01T20:13:20.123Z");
  EXPECT_EQ(utc_timestamp(system_clock::time_point{}, 1), "1970-01-01T00:00:00.0Z");
}

}  // namespace
}  // namespace m3ret::trainer
