// core/ordered_pool.h: items in stream order whatever the threads, claims in
// order and within the window, the end of the stream, the first error of claim
// or make reaching the consumer, and a pool let go before its stream ends.
#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/ordered_pool.h"

namespace m3ret {
namespace {

using Pool = OrderedPool<size_t, std::string>;

Pool::Claim first(size_t n) {
  return [n](size_t i) { return i < n ? std::optional<size_t>(i) : std::nullopt; };
}

// Uneven work, so that items finish out of order on several threads.
std::string slow_item(size_t i) {
  volatile uint64_t x = 0;
  for (uint64_t k = 0; k < (i % 7) * 20000; ++k) x = x + k;
  return std::to_string(i);
}

TEST(OrderedPool, ItemsComeInStreamOrderThenTheEnd) {
  for (size_t threads : {1, 3, 8}) {
    for (size_t window : {1, 4, 64}) {
      Pool pool(threads, window, first(300), slow_item);
      for (size_t i = 0; i < 300; ++i) {
        ASSERT_EQ(pool.position(), i);
        auto item = pool.next();
        ASSERT_TRUE(item.has_value()) << "threads " << threads << " window " << window;
        ASSERT_EQ(*item, std::to_string(i)) << "threads " << threads << " window " << window;
      }
      EXPECT_FALSE(pool.next().has_value());
      EXPECT_FALSE(pool.next().has_value()) << "the end stays the end";
    }
  }
  Pool empty(2, 2, first(0), slow_item);
  EXPECT_FALSE(empty.next().has_value());
}

TEST(OrderedPool, ClaimsAreInOrderAndWithinTheWindowAheadOfTheConsumer) {
  constexpr size_t kWindow = 3;
  std::atomic<size_t> requested{0};  // next() calls begun: the pool's position is at most this
  std::vector<size_t> claims;        // claim runs under the pool's lock: no race here
  size_t worst_ahead = 0;
  Pool pool(
      4, kWindow,
      [&](size_t i) {
        claims.push_back(i);
        worst_ahead = std::max(worst_ahead, i + 1 - std::min(i + 1, requested.load()));
        return i < 200 ? std::optional<size_t>(i) : std::nullopt;
      },
      slow_item);
  for (size_t i = 0;; ++i) {
    ++requested;
    if (!pool.next()) break;
  }
  ASSERT_EQ(claims.size(), 201u) << "200 items and the claim that ended the stream";
  for (size_t i = 0; i < claims.size(); ++i) ASSERT_EQ(claims[i], i);
  EXPECT_LE(worst_ahead, kWindow) << "items claimed beyond those the consumer asked for";
}

TEST(OrderedPool, TheFirstErrorOfMakeEndsTheStreamAndReachesTheConsumer) {
  std::atomic<size_t> claimed{0};
  Pool pool(
      4, 8,
      [&](size_t i) {
        ++claimed;
        return std::optional<size_t>(i);  // an endless stream
      },
      [](size_t i) -> std::string {
        if (i == 20) throw std::runtime_error("item 20 failed");
        return slow_item(i);
      });
  size_t taken = 0;
  try {
    while (pool.next()) ++taken;
    FAIL() << "the stream ended without the error";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "item 20 failed");
  }
  EXPECT_LE(taken, 20u) << "items after the failed one were returned";
  EXPECT_LE(claimed.load(), 20u + 8u) << "claims went on past the window after the error";
  EXPECT_THROW(pool.next(), std::runtime_error) << "the error stays";
}

TEST(OrderedPool, AnErrorOfClaimReachesTheConsumer) {
  Pool pool(
      2, 4,
      [](size_t i) -> std::optional<size_t> {
        if (i == 5) throw std::runtime_error("claim 5 failed");
        return i;
      },
      slow_item);
  size_t taken = 0;
  try {
    while (auto item = pool.next()) ASSERT_EQ(*item, std::to_string(taken++));
    FAIL() << "the stream ended without the error";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "claim 5 failed");
  }
  EXPECT_LE(taken, 5u);
}

TEST(OrderedPool, APoolLetGoBeforeItsEndStopsItsWorkers) {
  std::atomic<size_t> made{0};
  {
    Pool pool(
        3, 5, [](size_t i) { return std::optional<size_t>(i); },
        [&](size_t i) {
          ++made;
          return slow_item(i);
        });
    ASSERT_EQ(*pool.next(), "0");
    ASSERT_EQ(*pool.next(), "1");
  }  // joins: an endless stream must not keep the destructor waiting
  EXPECT_LE(made.load(), 2u + 5u);
}

}  // namespace
}  // namespace m3ret
