// One worker pool for independent items: parallel_for runs f(0) .. f(n-1) on
// up to `threads` threads (at least 1, at most n), each index exactly once
// unless an item throws. An exception stops the workers from taking further
// items (those already running finish); once every worker has joined, the
// exception of the lowest failing index is rethrown to the caller. Items run
// in no particular order. (An OrderedPool underneath, core/ordered_pool.h: the
// one pool of the code base.)
#pragma once

#include <cstddef>
#include <functional>

namespace m3ret {

void parallel_for(size_t n, size_t threads, const std::function<void(size_t)>& f);

}  // namespace m3ret
