#include "core/parallel.h"

#include <algorithm>
#include <optional>

#include "core/ordered_pool.h"

namespace m3ret {

void parallel_for(size_t n, size_t threads, const std::function<void(size_t)>& f) {
  if (n == 0) return;
  // An ordered pool whose window holds every item: no worker waits for a slow
  // item before it, and the caller only waits for the end (or the first error).
  OrderedPool<size_t, bool> pool(
      std::min(std::max<size_t>(threads, 1), n), n,
      [n](size_t i) { return i < n ? std::optional<size_t>(i) : std::nullopt; },
      [&f](size_t i) {
        f(i);
        return true;
      });
  while (pool.next()) {
  }
}

}  // namespace m3ret
