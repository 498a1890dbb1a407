// Local backend: each job is a /bin/sh child process (the command itself
// starts `mpiexec -n N m3ret ...`), in its own process group so a cancel ends
// the whole tree. Logs go to JOB_DIR/log.
//
// The job's lock: JOB_DIR/lock is flock()ed by the orchestrator BEFORE the job
// starts and the locked file description is inherited by the job (fd 9 of
// the wrapper and of everything it starts), so the lock is held exactly while
// some process of the job lives, whoever its parent is now. A restarted
// orchestrator that finds the lock held knows the job runs even when the
// crash came between posix_spawn and JOB_DIR/backend_id being written (it
// then waits for the wrapper to write its id), and never starts it twice.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "launcher/orchestrator/backend.h"
#include "launcher/orchestrator/sweep.h"
#include "launcher/process.h"

namespace m3ret::orchestrator {
namespace fs = std::filesystem;

namespace {

// Waits for the command. A forwarded signal interrupts `wait` (128+n) while the command runs on;
// once it has ended, `wait` once more gives its own status even when the interrupted wait was the
// last one before it ended (the shell keeps the status of a finished child).
constexpr const char* kWait = "while kill -0 $child 2>/dev/null; do wait $child; done\n";

// A train job's ranks append a collective timeout's message to this file (core/communicator.h),
// on the file system the nodes share. mpirun cannot finish that abort while a node is cut off (it
// waits until Slurm declares the node lost), so the wrapper looks for the file every second while
// the command runs, and ends the command and everything it started (mpirun puts each srun in a
// process group of its own) when it appears. The job then fails with the rank's exit code, 3, and
// the orchestrator resubmits it with --resume auto within max_retries.
constexpr const char* kTimeoutFile =
    "M3RET_COLLECTIVE_TIMEOUT_FILE=\"$M3RET_JOB_DIR/collective-timeout\"\n"
    "export M3RET_COLLECTIVE_TIMEOUT_FILE\n"
    "rm -f \"$M3RET_COLLECTIVE_TIMEOUT_FILE\"\n";
constexpr const char* kWatchingWait =
    "while kill -0 $child 2>/dev/null && [ ! -s \"$M3RET_COLLECTIVE_TIMEOUT_FILE\" ]; do\n"
    "  sleep 1 9>&- & wait $!\n"
    "done\n"
    "if [ -s \"$M3RET_COLLECTIVE_TIMEOUT_FILE\" ]; then\n"
    "  msg=\"m3ret-job: $(grep -m 1 -o 'collective .* on rank [0-9]* of [0-9]*' "
    "\"$M3RET_COLLECTIVE_TIMEOUT_FILE\"); ending the job (the command, mpirun and every process "
    "they started)\"\n"
    "  echo \"$msg\" >&2; echo \"$msg\" >> \"$M3RET_JOB_DIR/log\"\n"
    "  tree() { local c; echo \"$1\"; for c in $(pgrep -P \"$1\"); do tree \"$c\"; done; }\n"
    "  kill -KILL -$child $(tree $child) 2>/dev/null\n"
    "fi\n";
constexpr const char* kEndOnTimeout = "[ -s \"$M3RET_COLLECTIVE_TIMEOUT_FILE\" ] && rc=3\n";

}  // namespace

std::string job_wrapper_script(const std::string& command, const fs::path& job_dir,
                               const std::string& id_expr, bool watch_collective_timeout) {
  // The command runs in its own session so that USR1 (checkpoint and stop)
  // and TERM reach every process of it (mpiexec and the ranks); the wrapper
  // forwards them and records the exit code atomically. The job dir and the
  // command are shell-quoted once, here; the rest only expands "$M3RET_JOB_DIR".
  return fmt::format(
      "M3RET_JOB_DIR={0}\n"
      "export M3RET_JOB_DIR\n"
      "{5}"
      "mkdir -p \"$M3RET_JOB_DIR\"\n"
      "rm -f \"$M3RET_JOB_DIR/exit_code\"\n"
      "echo {1} > \"$M3RET_JOB_DIR/backend_id.tmp\" && mv \"$M3RET_JOB_DIR/backend_id.tmp\" "
      "\"$M3RET_JOB_DIR/backend_id\"\n"
      // the shell survives USR1; its children (mpiexec, ranks) get it
      "printf '%s\\n' 'trap : USR1' {2} > \"$M3RET_JOB_DIR/command.sh\"\n"
      // the traps are set before the command starts: a signal that arrives before it has
      // started is held and forwarded once it has (never the shell's default, death)
      "child= pending=\n"
      "forward() {{ if [ -n \"$child\" ]; then kill -$1 -$child 2>/dev/null; else pending=$1; fi; "
      "}}\n"
      "trap 'forward USR1' USR1\n"
      "trap 'forward TERM' TERM INT\n"
      "setsid /bin/sh \"$M3RET_JOB_DIR/command.sh\" >> \"$M3RET_JOB_DIR/log\" 2>&1 < /dev/null &\n"
      "child=$!\n"
      "if [ -n \"$pending\" ]; then kill -$pending -$child 2>/dev/null || kill -$pending $child; "
      "fi\n"
      "{3}"
      "wait $child; rc=$?\n"
      "{4}"
      "echo $rc > \"$M3RET_JOB_DIR/exit_code.tmp\" && mv \"$M3RET_JOB_DIR/exit_code.tmp\" "
      "\"$M3RET_JOB_DIR/exit_code\"\n"
      "exit $rc\n",
      launcher::shell_line({job_dir.string()}), id_expr, launcher::shell_line({command}),
      watch_collective_timeout ? kWatchingWait : kWait,
      watch_collective_timeout ? kEndOnTimeout : "", watch_collective_timeout ? kTimeoutFile : "");
}

std::string Backend::mpi_launch_prefix(JobKind, int ranks, const std::string& mpiexec) const {
  const auto words = split_command(mpiexec, "mpiexec");
  auto cmd = launcher::mpiexec_command(words.front(), ranks, {});
  // The user's options first; --bind-to none unless they chose a binding.
  if (std::find(words.begin(), words.end(), "--bind-to") == words.end())
    cmd.insert(cmd.begin() + 1, {"--bind-to", "none"});
  cmd.insert(cmd.begin() + 1, words.begin() + 1, words.end());
  return launcher::shell_line(cmd);
}

std::optional<std::string> read_job_file(const fs::path& f) {
  int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    throw Error(fmt::format("cannot open '{}': {}", f.string(), std::strerror(errno)));
  }
  std::string out;
  char buf[256];
  ssize_t n = 0;
  while ((n = ::read(fd, buf, sizeof buf)) != 0) {
    if (n > 0)
      out.append(buf, static_cast<size_t>(n));
    else if (errno != EINTR)
      break;
  }
  int e = errno;
  ::close(fd);
  if (n < 0) throw Error(fmt::format("cannot read '{}': {}", f.string(), std::strerror(e)));
  return out;
}

std::optional<int> read_exit_code(const fs::path& job_dir) {
  auto text = read_job_file(job_dir / "exit_code");
  int rc = 0;
  if (text && std::istringstream(*text) >> rc) return rc;
  return std::nullopt;
}

namespace {

std::optional<std::string> read_word(const fs::path& f) {
  auto text = read_job_file(f);
  std::string w;
  if (text && std::istringstream(*text) >> w) return w;
  return std::nullopt;
}

constexpr int kLockFd = 9;  // the job's lock, inherited by the wrapper and its children

// An O_CLOEXEC descriptor holding the exclusive flock of JOB_DIR/lock, or -1
// when another open file description (a running job) holds it.
int try_lock(const fs::path& job_dir) {
  fs::path f = job_dir / "lock";
  int fd = ::open(f.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(fmt::format("cannot open '{}': {}", f.string(), std::strerror(errno)));
  if (fd == kLockFd) {  // dup2(9, 9) would keep close-on-exec: move it out of the way
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, kLockFd + 1);
    ::close(fd);
    fd = moved;
    if (fd < 0) throw Error(fmt::format("cannot duplicate the lock of '{}'", f.string()));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    ::close(fd);
    if (e == EWOULDBLOCK) return -1;
    throw Error(fmt::format("cannot lock '{}': {}", f.string(), std::strerror(e)));
  }
  return fd;
}

// Whether some process of the job still holds JOB_DIR/lock; nullopt when the
// job dir has no lock file (never started here). Throws when it cannot be
// opened for another reason (out of descriptors is not "no job").
std::optional<bool> lock_held(const fs::path& job_dir) {
  fs::path f = job_dir / "lock";
  int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return std::nullopt;
  if (fd < 0) throw Error(fmt::format("cannot open '{}': {}", f.string(), std::strerror(errno)));
  bool held = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // releases it again when we took it
  return held;
}

void write_atomic(const fs::path& f, const std::string& text) {
  fs::path tmp = f;
  tmp += ".orch.tmp";  // not the wrapper's backend_id.tmp: both may write at once
  {
    std::ofstream out(tmp);
    out << text;
    if (!out) throw Error(fmt::format("cannot write '{}'", tmp.string()));
  }
  fs::rename(tmp, f);
}

class LocalBackend : public Backend {
 public:
  LocalBackend(int max_parallel, std::function<void(int)> after_spawn)
      : max_parallel_(max_parallel), after_spawn_(std::move(after_spawn)) {}
  std::string name() const override { return "local"; }
  int max_parallel() const override { return max_parallel_; }

  std::string submit(const JobRequest& job) override {
    fs::create_directories(job.job_dir);
    int lock = try_lock(job.job_dir);
    if (lock < 0) {
      // A process of this job already runs: started by an orchestrator that
      // died before it recorded the id. Follow that one.
      if (auto id = wait_for_id(job.job_dir)) return *id;
      throw Error(fmt::format("job '{}': {} is locked by a running job that wrote no backend_id",
                              job.name, (job.job_dir / "lock").string()));
    }
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }  // the job keeps its own reference to the lock
    } closer{lock};
    std::string script =
        job_wrapper_script(job.command, job.job_dir, "$$", job.kind == JobKind::kTrain);
    { std::ofstream(job.job_dir / "job.sh") << "#!/bin/sh\n" << script; }
    launcher::SpawnOptions o;
    o.new_process_group = true;
    o.keep_fd = lock;  // the job's copy of the lock (fd 9)
    o.keep_fd_as = kLockFd;
    o.env_defaults = thread_budget(job.ranks);
    pid_t pid = 0;
    try {
      pid = launcher::spawn({"/bin/sh", (job.job_dir / "job.sh").string()}, o);
    } catch (const Error& e) {
      throw Error(fmt::format("cannot start job '{}': {}", job.name, e.what()));
    }
    if (after_spawn_) after_spawn_(pid);
    // Also written by the wrapper; written here too so that find() sees it at once.
    write_atomic(job.job_dir / "backend_id", fmt::format("{}\n", pid));
    return std::to_string(pid);
  }

  // Throws m3ret::Error when a file of the job cannot be read (e.g. out of
  // descriptors): that says nothing about the job, so the caller polls again.
  Observed poll(const std::string& id, const fs::path& job_dir) override {
    pid_t pid = static_cast<pid_t>(std::stol(id));
    int status = 0;
    // Reap our own children (remembering how they ended, in case this poll
    // fails further down); a job started by an earlier orchestrator is alive
    // while it holds its lock (pid reuse and zombies do not fool it).
    pid_t r = waitpid(pid, &status, WNOHANG);
    bool alive = r == 0;
    if (r == pid) reaped_[pid] = status;
    if (r < 0 && errno == ECHILD && !reaped_.count(pid)) {
      auto held = lock_held(job_dir);
      alive = held ? *held : (kill(pid, 0) == 0 && same_job(pid, job_dir));
    }
    if (auto rc = read_exit_code(job_dir)) {
      return {*rc == 0 ? JobState::kSucceeded : JobState::kFailed, *rc,
              fmt::format("exit code {}", *rc)};
    }
    if (alive) return {JobState::kRunning, -1, ""};
    if (auto it = reaped_.find(pid); it != reaped_.end() && WIFSIGNALED(it->second)) {
      return {JobState::kFailed, 128 + WTERMSIG(it->second),
              fmt::format("killed by signal {}", WTERMSIG(it->second))};
    }
    return {JobState::kFailed, -1, "lost: the process ended without writing an exit code"};
  }

  std::optional<std::string> find(const std::string&, const fs::path& job_dir) override {
    if (auto id = read_word(job_dir / "backend_id")) return id;
    if (lock_held(job_dir).value_or(false))
      return wait_for_id(job_dir);  // started, id not yet written
    return std::nullopt;            // never started (or died before its first line)
  }

  void cancel(const std::string& id) override {
    pid_t pid = static_cast<pid_t>(std::stol(id));
    kill(-pid, SIGTERM);  // the job's process group
  }

 private:
  // The wrapper writes its id first thing; wait while the job holds its lock.
  static std::optional<std::string> wait_for_id(const fs::path& job_dir) {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < until) {
      if (auto id = read_word(job_dir / "backend_id")) return id;
      if (!lock_held(job_dir).value_or(false)) return read_word(job_dir / "backend_id");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
  }
  // Guards against pid reuse for job dirs without a lock file: the process
  // must still run JOB_DIR/job.sh.
  static bool same_job(pid_t pid, const fs::path& job_dir) {
    auto cmdline = read_job_file(fmt::format("/proc/{}/cmdline", pid));
    return cmdline && cmdline->find((job_dir / "job.sh").string()) != std::string::npos;
  }
  // Up to max_parallel jobs of `ranks` processes share this machine's cores:
  // each process gets an equal share as OMP_NUM_THREADS and
  // OPENBLAS_NUM_THREADS, and OpenMP threads sleep instead of spinning
  // (OMP_WAIT_POLICY=PASSIVE), unless the user's environment sets them
  // (defaults for launcher::spawn).
  // Without this, two jobs on 2 cores each run 2 OpenMP + 2 OpenBLAS
  // spinning threads and a tiny training step takes 10x longer.
  std::vector<std::string> thread_budget(int ranks) const {
    cpu_set_t set;
    int cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    if (cores <= 0) cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const std::string share =
        std::to_string(std::max(1, cores / std::max(1, max_parallel_ * std::max(1, ranks))));
    return {"OMP_NUM_THREADS=" + share, "OPENBLAS_NUM_THREADS=" + share, "OMP_WAIT_POLICY=PASSIVE"};
  }
  int max_parallel_;
  std::function<void(int)> after_spawn_;
  std::map<pid_t, int> reaped_;  // wait status of children reaped by poll()
};

}  // namespace

std::unique_ptr<Backend> make_local_backend(int max_parallel,
                                            std::function<void(int)> after_spawn) {
  return std::make_unique<LocalBackend>(max_parallel, std::move(after_spawn));
}

}  // namespace m3ret::orchestrator
