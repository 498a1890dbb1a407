// Local backend: each job is a /bin/sh child process (the command itself
// starts `mpiexec -n N m3ret ...`), in its own process group so a cancel ends
// the whole tree. Logs go to JOB_DIR/log.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "launcher/orchestrator/backend.h"
#include "launcher/orchestrator/command.h"
#include "launcher/orchestrator/sweep.h"

namespace m3ret::orchestrator {
namespace fs = std::filesystem;

std::string job_wrapper_script(const std::string& command, const fs::path& job_dir,
                               const std::string& id_expr) {
  // The command runs in its own session so that USR1 (checkpoint and stop)
  // and TERM reach every process of it (mpiexec and the ranks); the wrapper
  // forwards them and records the exit code atomically.
  return fmt::format(
      "mkdir -p '{0}'\n"
      "rm -f '{0}/exit_code'\n"
      "echo {1} > '{0}/backend_id.tmp' && mv '{0}/backend_id.tmp' '{0}/backend_id'\n"
      "cat > '{0}/command.sh' <<'M3RET_COMMAND_EOF'\n"
      "trap : USR1\n"  // the shell survives USR1; its children (mpiexec, ranks) get it
      "{2}\n"
      "M3RET_COMMAND_EOF\n"
      "setsid /bin/sh '{0}/command.sh' >> '{0}/log' 2>&1 < /dev/null &\n"
      "child=$!\n"
      "trap 'kill -USR1 -$child 2>/dev/null' USR1\n"
      "trap 'kill -TERM -$child 2>/dev/null' TERM INT\n"
      "while :; do wait $child; rc=$?; kill -0 $child 2>/dev/null || break; done\n"
      "echo $rc > '{0}/exit_code.tmp' && mv '{0}/exit_code.tmp' '{0}/exit_code'\n"
      "exit $rc\n",
      job_dir.string(), id_expr, command);
}

std::optional<int> read_exit_code(const fs::path& job_dir) {
  std::ifstream in(job_dir / "exit_code");
  int rc = 0;
  if (in >> rc) return rc;
  return std::nullopt;
}

namespace {

std::optional<std::string> read_word(const fs::path& f) {
  std::ifstream in(f);
  std::string w;
  if (in >> w) return w;
  return std::nullopt;
}

class LocalBackend : public Backend {
 public:
  explicit LocalBackend(int max_parallel) : max_parallel_(max_parallel) {}
  std::string name() const override { return "local"; }
  int max_parallel() const override { return max_parallel_; }

  std::string submit(const JobRequest& job) override {
    fs::create_directories(job.job_dir);
    std::string script = job_wrapper_script(job.command, job.job_dir, "$$");
    {
      std::ofstream(job.job_dir / "job.sh") << "#!/bin/sh\n" << script;
    }
    std::string path = (job.job_dir / "job.sh").string();
    const char* argv[] = {"/bin/sh", path.c_str(), nullptr};
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    pid_t pid = 0;
    auto env = clean_environment();
    auto envp = environ_pointers(env);
    int rc = posix_spawn(&pid, "/bin/sh", nullptr, &attr, const_cast<char**>(argv), envp.data());
    posix_spawnattr_destroy(&attr);
    if (rc != 0) throw Error(fmt::format("cannot start job '{}': {}", job.name, std::strerror(rc)));
    // Also written by the wrapper; written here too so that find() sees it at once.
    std::ofstream(job.job_dir / "backend_id") << pid << "\n";
    return std::to_string(pid);
  }

  Observed poll(const std::string& id, const fs::path& job_dir) override {
    pid_t pid = static_cast<pid_t>(std::stol(id));
    int status = 0;
    // Reap our own children; a child of an earlier orchestrator is reaped by init.
    pid_t r = waitpid(pid, &status, WNOHANG);
    bool alive = (r == 0) || (r < 0 && errno == ECHILD && kill(pid, 0) == 0 && same_job(pid, job_dir));
    if (auto rc = read_exit_code(job_dir)) {
      return {*rc == 0 ? JobState::kSucceeded : JobState::kFailed, *rc, fmt::format("exit code {}", *rc)};
    }
    if (alive) return {JobState::kRunning, -1, ""};
    if (r == pid && WIFSIGNALED(status)) {
      return {JobState::kFailed, 128 + WTERMSIG(status),
              fmt::format("killed by signal {}", WTERMSIG(status))};
    }
    return {JobState::kFailed, -1, "lost: the process ended without writing an exit code"};
  }

  std::optional<std::string> find(const std::string&, const fs::path& job_dir) override {
    return read_word(job_dir / "backend_id");
  }

  void cancel(const std::string& id) override {
    pid_t pid = static_cast<pid_t>(std::stol(id));
    kill(-pid, SIGTERM);  // the job's process group
  }

 private:
  // Guards against pid reuse: the process must still run JOB_DIR/job.sh.
  static bool same_job(pid_t pid, const fs::path& job_dir) {
    std::ifstream in(fmt::format("/proc/{}/cmdline", pid));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str().find((job_dir / "job.sh").string()) != std::string::npos;
  }
  int max_parallel_;
};

}  // namespace

std::unique_ptr<Backend> make_local_backend(int max_parallel) {
  return std::make_unique<LocalBackend>(max_parallel);
}

}  // namespace m3ret::orchestrator
