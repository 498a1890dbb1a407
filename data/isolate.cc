#include "data/isolate.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <new>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fork_server.h"
#include "core/fs.h"
#include "core/mutex.h"

namespace m3ret::data::isolate {

namespace {

// Who is inside a LibraryScope, and whether a fork waits or runs. Never destroyed (threads may
// hold scopes at exit); a child starts with a fresh one (its copy may be locked).
struct Gate {
  Mutex mu;
  CondVar cv;
  int inside M3RET_GUARDED_BY(mu) = 0;         // threads inside a scope
  int forks_waiting M3RET_GUARDED_BY(mu) = 0;  // run() calls waiting for them to leave
  bool forking M3RET_GUARDED_BY(mu) = false;   // a fork runs now
};
std::atomic<Gate*> gate{new Gate};
thread_local int scope_depth = 0;  // this thread's nested scopes

// Result framing, child -> parent: one tag byte, then the payload.
constexpr char kOk = 'K', kInput = 'I', kOther = 'X', kMemory = 'M';

// Bytes of address space this process maps now (from /proc/self/statm).
uint64_t address_space_bytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t pages = 0;
  in >> pages;
  return pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

// RLIMIT_AS for a child: its address space now plus `memory_mb`.
uint64_t address_space_limit(int64_t memory_mb) {
  return address_space_bytes() + static_cast<uint64_t>(memory_mb) * 1024 * 1024;
}

// The child's work: runs task(args) under the memory limit, writes the framed result to `fd`.
[[noreturn]] void finish_child(int fd, Task task, const std::string& args, uint64_t as_limit) {
  rlimit rl{as_limit, as_limit};
  ::setrlimit(RLIMIT_AS, &rl);
  std::string out;
  try {
    out = kOk + task(args);
  } catch (const InputError& e) {
    out = kInput + e.path() + '\0' + e.reason();
  } catch (const std::bad_alloc&) {
    out = std::string(1, kMemory);
  } catch (const std::exception& e) {
    out = kOther + std::string(e.what());
  } catch (...) {
    out = kOther + std::string("unknown exception");
  }
  fs::write_all(fd, out.data(), out.size());
  ::_exit(0);
}

// A child forked by this process (no fork server).
[[noreturn]] void forked_child(int fd, Task task, const std::string& args, uint64_t as_limit,
                               pid_t parent) {
  // The child dies with its parent (a killed rank, a job's end): a decoder that spins is never
  // left running on the node. A parent already gone before this line is seen by getppid().
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);
  gate.store(new Gate);              // the parent's is marked forking; this process has one thread
  fs::close_descriptors_except(fd);  // the parent's (other pipes, MPI, HDF5): none is ours
  finish_child(fd, task, args, as_limit);
}

// A child of the fork server: `bytes` holds the task, the memory limit and the task's arguments.
void server_child(int fd, const std::string& bytes) {
  Task task = nullptr;
  int64_t memory_mb = 0;
  if (bytes.size() < sizeof(task) + sizeof(memory_mb)) ::_exit(1);
  std::memcpy(&task, bytes.data(), sizeof(task));
  std::memcpy(&memory_mb, bytes.data() + sizeof(task), sizeof(memory_mb));
  const std::string args = bytes.substr(sizeof(task) + sizeof(memory_mb));
  finish_child(fd, task, args, address_space_limit(memory_mb));
}

// Reads the child's result until EOF or the deadline; false on timeout.
bool read_result(int fd, std::chrono::steady_clock::time_point deadline, std::string& out) {
  char buf[65536];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return true;  // EOF (or the child is gone)
    out.append(buf, static_cast<size_t>(n));
  }
}

// " (KEY)", naming the setting of a limit; "" when there is none.
std::string setting(const std::string& key) { return key.empty() ? "" : " (" + key + ")"; }

// Forks this process (no fork server) to run the task; the child's pid.
pid_t fork_child(const std::string& path, Task task, const std::string& args, const Limits& limits,
                 const int fds[2]) {
  if (scope_depth > 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw Error(
        fmt::format("{}: internal error: a decoder process forked inside a library call", path));
  }
  const uint64_t as_limit = address_space_limit(limits.memory_mb);
  // One fork at a time (libraries' fork handlers, ITK's thread pool for one, are not safe to run
  // from two threads at once), and only while no thread is inside a library scope.
  Gate& g = *gate.load();
  {
    MutexLock lock(g.mu);
    ++g.forks_waiting;
    while (g.forking || g.inside > 0) g.cv.wait(lock);
    --g.forks_waiting;
    g.forking = true;
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) forked_child(fds[1], task, args, as_limit, parent);
  const int err = errno;
  MutexLock lock(g.mu);
  g.forking = false;
  g.cv.notify_all();
  errno = err;
  return pid;
}

}  // namespace

std::string run(const std::string& path, Task task, const std::string& args, const Limits& limits) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw Error(fmt::format("{}: cannot make a pipe: {}", path, std::strerror(errno)));
  std::string request(sizeof(task) + sizeof(limits.memory_mb), '\0');
  std::memcpy(request.data(), &task, sizeof(task));
  std::memcpy(request.data() + sizeof(task), &limits.memory_mb, sizeof(limits.memory_mb));
  request += args;
  pid_t pid = fork_server::spawn(server_child, request, fds[1]);
  const bool served = pid > 0;
  if (!served) pid = fork_child(path, task, args, limits, fds);
  if (pid < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    throw Error(fmt::format("{}: cannot fork a decoder process: {}", path, std::strerror(err)));
  }
  ::close(fds[1]);
  std::string out;
  const bool finished = read_result(
      fds[0], std::chrono::steady_clock::now() + std::chrono::seconds(limits.timeout_s), out);
  ::close(fds[0]);
  if (!finished) ::kill(pid, SIGKILL);
  int status = 0;
  if (served) {
    status = fork_server::wait(pid);
    // -1: the server died, and its children with it (a result already read stands).
    if (status == -1) status = out.empty() ? SIGKILL : 0;
  } else {
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (!finished) {
    throw InputError(path, fmt::format("{} took longer than {} s{}; stopped", limits.task,
                                       limits.timeout_s, setting(limits.timeout_setting)));
  }
  if (WIFSIGNALED(status)) {
    throw InputError(path,
                     fmt::format("the decoder crashed ({}) on this file: corrupt or truncated",
                                 ::strsignal(WTERMSIG(status))));
  }
  if (out.empty())
    throw InputError(path, "the decoder exited without a result: corrupt or truncated");
  const std::string body = out.substr(1);
  switch (out[0]) {
    case kOk:
      return body;
    case kInput: {
      const size_t nul = body.find('\0');
      if (nul == std::string::npos) throw InputError(path, body);
      throw InputError(body.substr(0, nul), body.substr(nul + 1));
    }
    case kMemory:
      throw InputError(path, fmt::format("{} needs more than {} MB{}", limits.task,
                                         limits.memory_mb, setting(limits.memory_setting)));
    default:
      throw Error(fmt::format("{}: {}", path, body));
  }
}

LibraryScope::LibraryScope() {
  if (scope_depth++ > 0) return;
  Gate& g = *gate.load();
  MutexLock lock(g.mu);
  while (g.forking || g.forks_waiting > 0) g.cv.wait(lock);
  ++g.inside;
}

LibraryScope::~LibraryScope() {
  if (--scope_depth > 0) return;
  Gate& g = *gate.load();
  MutexLock lock(g.mu);
  if (--g.inside == 0) g.cv.notify_all();
}

namespace {

// check()'s task: the work's address, then its arguments; its error's message, or "".
std::string check_task(const std::string& bytes) {
  void (*work)(const std::string&) = nullptr;
  if (bytes.size() < sizeof(work)) return "internal error: short check request";
  std::memcpy(&work, bytes.data(), sizeof(work));
  try {
    work(bytes.substr(sizeof(work)));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

void check(const std::string& path, void (*work)(const std::string& args), const std::string& args,
           const Limits& limits) {
  std::string bytes(sizeof(work), '\0');
  std::memcpy(bytes.data(), &work, sizeof(work));
  const std::string error = run(path, check_task, bytes + args, limits);
  if (!error.empty()) throw Error(error);
}

std::string pack(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    const uint64_t n = p.size();
    out.append(reinterpret_cast<const char*>(&n), sizeof(n));
    out += p;
  }
  return out;
}

std::vector<std::string> unpack(const std::string& bytes) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < bytes.size()) {
    uint64_t n = 0;
    if (bytes.size() - at < sizeof(n)) throw Error("internal error: truncated child arguments");
    std::memcpy(&n, bytes.data() + at, sizeof(n));
    at += sizeof(n);
    if (bytes.size() - at < n) throw Error("internal error: truncated child arguments");
    out.push_back(bytes.substr(at, n));
    at += n;
  }
  return out;
}

}  // namespace m3ret::data::isolate
