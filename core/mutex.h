// A mutex, its scoped lock and a condition variable that Clang's thread-safety
// analysis understands (-Wthread-safety; libstdc++'s std::mutex carries no
// annotations, so the analysis cannot see it).
//
// Mark the state a mutex guards and the functions that expect it held:
//
//   class Queue {
//     void push(int v) M3RET_EXCLUDES(mu_) { MutexLock l(mu_); items_.push_back(v); cv_.notify_one(); }
//     int pop() M3RET_EXCLUDES(mu_) {
//       MutexLock l(mu_);
//       while (items_.empty()) cv_.wait(l);  // a condition over guarded state reads it under the lock
//       ...
//     }
//     void drop_locked() M3RET_REQUIRES(mu_);
//     Mutex mu_;
//     CondVar cv_;
//     std::deque<int> items_ M3RET_GUARDED_BY(mu_);
//   };
//
// Clang then reports, at compile time, a guarded member read or written
// without its mutex and a REQUIRES function called without it (the
// `thread_safety` test compiles every file that includes this header with
// clang++ -Wthread-safety -Werror). GCC ignores the annotations. Wait on a
// CondVar in a loop over the condition, in the function that holds the lock,
// rather than with a predicate lambda: the analysis checks a loop, not a
// lambda's body.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define M3RET_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define M3RET_THREAD_ANNOTATION(x)
#endif

#define M3RET_CAPABILITY(x) M3RET_THREAD_ANNOTATION(capability(x))
#define M3RET_SCOPED_CAPABILITY M3RET_THREAD_ANNOTATION(scoped_lockable)
#define M3RET_GUARDED_BY(x) M3RET_THREAD_ANNOTATION(guarded_by(x))
#define M3RET_PT_GUARDED_BY(x) M3RET_THREAD_ANNOTATION(pt_guarded_by(x))
#define M3RET_REQUIRES(...) M3RET_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define M3RET_ACQUIRE(...) M3RET_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define M3RET_RELEASE(...) M3RET_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define M3RET_EXCLUDES(...) M3RET_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define M3RET_RETURN_CAPABILITY(x) M3RET_THREAD_ANNOTATION(lock_returned(x))

namespace m3ret {

class M3RET_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;
  void lock() M3RET_ACQUIRE() { mu_.lock(); }
  void unlock() M3RET_RELEASE() { mu_.unlock(); }

 private:
  friend class MutexLock;
  std::mutex mu_;
};

// Holds a Mutex for its scope (std::unique_lock underneath, for CondVar).
class M3RET_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) M3RET_ACQUIRE(mu) : lock_(mu.mu_) {}
  ~MutexLock() M3RET_RELEASE() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  friend class CondVar;
  std::unique_lock<std::mutex> lock_;
};

// A condition variable over a MutexLock. Wake-ups may be spurious: wait in a
// loop over the condition.
class CondVar {
 public:
  void wait(MutexLock& lock) { cv_.wait(lock.lock_); }
  // False when `deadline` passed first.
  bool wait_until(MutexLock& lock, std::chrono::steady_clock::time_point deadline) {
    return cv_.wait_until(lock.lock_, deadline) == std::cv_status::no_timeout;
  }
  void notify_one() { cv_.notify_one(); }
  void notify_all() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace m3ret
