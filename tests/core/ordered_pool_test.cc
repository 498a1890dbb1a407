// core/ordered_pool.h: items in stream order whatever the threads, claims in
// order and within the window, the end of the stream, an error of claim or make
// reaching the consumer after the items before it, and a pool let go before its
// stream ends.
#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
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

// Takes items until next() throws, checking that they come in order; returns
// how many came and the error's message ("" when the stream ended instead).
std::pair<size_t, std::string> take_until_error(Pool& pool) {
  size_t taken = 0;
  try {
    while (auto item = pool.next()) {
      EXPECT_EQ(*item, std::to_string(taken));
      ++taken;
    }
  } catch (const std::runtime_error& e) {
    return {taken, e.what()};
  }
  return {taken, ""};
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
  const auto [taken, error] = take_until_error(pool);
  EXPECT_EQ(error, "item 20 failed");
  EXPECT_EQ(taken, 20u) << "every item before the failed one, then its error";
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
  const auto [taken, error] = take_until_error(pool);
  EXPECT_EQ(error, "claim 5 failed");
  EXPECT_EQ(taken, 5u) << "every item before the failed claim, then its error";
  EXPECT_THROW(pool.next(), std::runtime_error) << "the error stays";
}

TEST(OrderedPool, WhenSeveralItemsFailTheEarliestErrorIsTheOneSeen) {
  for (int round = 0; round < 20; ++round) {
    Pool pool(4, 16, first(100), [](size_t i) -> std::string {
      if (i == 7 || i == 9 || i == 12) throw std::runtime_error("item " + std::to_string(i));
      return slow_item(i);
    });
    const auto [taken, error] = take_until_error(pool);
    EXPECT_EQ(error, "item 7");
    EXPECT_EQ(taken, 7u);
  }
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
