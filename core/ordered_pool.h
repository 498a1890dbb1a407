// An ordered worker pool: worker threads make the items of a stream in
// parallel, and one consumer takes them in stream order, with a bounded number
// of items made ahead of it. The sharder decodes a shard's rows this way (and
// writes them in row order); the loader reads batches this way (and hands them
// to the trainer in step order).
//
//   OrderedPool<size_t, Decoded> pool(
//       threads, window,
//       [n](size_t i) { return i < n ? std::optional<size_t>(i) : std::nullopt; },  // claim
//       [&](size_t i) { return decode(rows[i]); });                                  // make
//   while (auto d = pool.next()) write(*d);
//
// - claim(i) runs under the pool's lock, once per item, in stream order
//   (i = 0, 1, ...): it returns the item's ticket (e.g. a sampler's next batch,
//   which must be drawn in order), or nullopt when the stream has ended.
// - make(ticket) runs on a worker without the lock and returns the item.
// - At most `window` items are claimed and not yet taken by next() (memory
//   stays bounded whatever the consumer's pace).
// - An exception of claim or make ends the stream: workers claim nothing
//   more, next() returns the items before the failed one, in order, and then
//   rethrows its exception, on every later call too. (When several items
//   fail, the earliest one's exception is the one the consumer sees.)
// - The destructor stops the workers and joins them, whether or not the
//   stream was consumed (a consumer that fails simply lets the pool go).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstddef>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "core/mutex.h"

namespace m3ret {

template <typename Ticket, typename Item>
class OrderedPool {
 public:
  using Claim = std::function<std::optional<Ticket>(size_t)>;
  using Make = std::function<Item(Ticket)>;

  // threads and window are at least 1.
  OrderedPool(size_t threads, size_t window, Claim claim, Make make)
      : window_(std::max<size_t>(window, 1)), claim_(std::move(claim)), make_(std::move(make)) {
    const size_t count = std::max<size_t>(threads, 1);
    threads_.reserve(count);
    for (size_t t = 0; t < count; ++t) threads_.emplace_back([this] { work(); });
  }

  ~OrderedPool() {
    {
      MutexLock lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  OrderedPool(const OrderedPool&) = delete;
  OrderedPool& operator=(const OrderedPool&) = delete;

  // The item of index position(); blocks until it is made. nullopt once the
  // stream has ended and every item was taken. Rethrows the exception of the
  // failed item once every item before it was taken (sticky).
  std::optional<Item> next() M3RET_EXCLUDES(mu_) {
    std::optional<Item> item;
    {
      MutexLock lock(mu_);
      // Every item before error_at_ was claimed, so it is made or fails (which
      // lowers error_at_): the wait ends.
      while (ready_.count(next_) == 0 && next_ < error_at_ && !(ended_ && next_ >= claimed_))
        cv_.wait(lock);
      auto it = ready_.find(next_);
      if (it == ready_.end()) {
        if (next_ >= error_at_) std::rethrow_exception(error_);
        return std::nullopt;  // ended
      }
      item = std::move(it->second);
      ready_.erase(it);
      ++next_;
    }
    cv_.notify_all();
    return item;
  }

  // The index of the item next() returns next.
  size_t position() const M3RET_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return next_;
  }

 private:
  void work() M3RET_EXCLUDES(mu_) {
    for (;;) {
      std::optional<Ticket> ticket;
      size_t index = 0;
      {
        MutexLock lock(mu_);
        while (!stop_ && !error_ && !ended_ && claimed_ >= next_ + window_) cv_.wait(lock);
        if (stop_ || error_ || ended_) return;
        try {
          ticket = claim_(claimed_);
        } catch (...) {
          fail(claimed_, std::current_exception());
        }
        if (!ticket) {
          ended_ = !error_;
          cv_.notify_all();
          return;
        }
        index = claimed_++;
      }
      finish(index, std::move(*ticket));
    }
  }

  // Makes item `index` and hands it over (or records its failure).
  void finish(size_t index, Ticket ticket) M3RET_EXCLUDES(mu_) {
    std::optional<Item> item;
    std::exception_ptr error;
    try {
      item.emplace(make_(std::move(ticket)));
    } catch (...) {
      error = std::current_exception();
    }
    {
      MutexLock lock(mu_);
      if (item)
        ready_.emplace(index, std::move(*item));
      else
        fail(index, error);
    }
    cv_.notify_all();
  }

  // Item `index` failed with `error`: the stream ends there (or earlier).
  void fail(size_t index, std::exception_ptr error) M3RET_REQUIRES(mu_) {
    if (index < error_at_) {
      error_at_ = index;
      error_ = std::move(error);
    }
  }

  const size_t window_;
  const Claim claim_;
  const Make make_;

  mutable Mutex mu_;
  CondVar cv_;
  size_t claimed_ M3RET_GUARDED_BY(mu_) = 0;            // items claimed so far
  size_t next_ M3RET_GUARDED_BY(mu_) = 0;               // the item next() returns next
  bool ended_ M3RET_GUARDED_BY(mu_) = false;            // claim returned nullopt
  bool stop_ M3RET_GUARDED_BY(mu_) = false;             // the pool is being destroyed
  size_t error_at_ M3RET_GUARDED_BY(mu_) = SIZE_MAX;    // the earliest failed item
  std::exception_ptr error_ M3RET_GUARDED_BY(mu_);      // its exception
  std::map<size_t, Item> ready_ M3RET_GUARDED_BY(mu_);  // made, not yet taken
  std::vector<std::thread> threads_;
};

}  // namespace m3ret
