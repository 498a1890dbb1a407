#include "launcher/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "core/error.h"

extern char** environ;

namespace m3ret::launcher {
namespace {

// posix_spawn's file actions and attributes, destroyed on every path.
struct SpawnSetup {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  SpawnSetup() {
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
};

size_t env_size() {
  size_t n = 0;
  while (environ[n]) ++n;
  return n;
}

bool has_key(const std::vector<std::string>& env, const std::string& entry) {
  std::string key = entry.substr(0, entry.find('=') + 1);
  for (const auto& e : env)
    if (e.rfind(key, 0) == 0) return true;
  return false;
}

void set_signal_mask(SpawnSetup& s, const std::vector<int>& blocked) {
  if (blocked.empty()) return;
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : blocked) sigaddset(&mask, sig);
  posix_spawnattr_setsigmask(&s.attr, &mask);
}

void add_file_actions(SpawnSetup& s, const SpawnOptions& o) {
  if (o.stdin_null) posix_spawn_file_actions_addopen(&s.fa, 0, "/dev/null", O_RDONLY, 0);
  if (o.stdout_fd >= 0) posix_spawn_file_actions_adddup2(&s.fa, o.stdout_fd, 1);
  if (o.stderr_fd >= 0) posix_spawn_file_actions_adddup2(&s.fa, o.stderr_fd, 2);
  int first_closed = 3;
  if (o.keep_fd >= 0) {
    // dup2 clears close-on-exec on the copy; everything else from 3 up is closed.
    posix_spawn_file_actions_adddup2(&s.fa, o.keep_fd, o.keep_fd_as);
    for (int fd = 3; fd < o.keep_fd_as; ++fd) posix_spawn_file_actions_addclose(&s.fa, fd);
    first_closed = o.keep_fd_as + 1;
  }
  if (!o.stand_in) posix_spawn_file_actions_addclosefrom_np(&s.fa, first_closed);
}

}  // namespace

std::filesystem::path self_path() { return std::filesystem::read_symlink("/proc/self/exe"); }

namespace {
// The environment before main (so before MPI_Init, whose singleton start adds
// OMPI_* variables of its own).
const std::vector<std::string> kStartupEnvironment(environ, environ + env_size());
bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }
}  // namespace

std::vector<std::string> child_environment(const std::vector<std::string>& current,
                                           const std::vector<std::string>& startup) {
  const bool rank = std::any_of(startup.begin(), startup.end(), [](const std::string& e) {
    return starts_with(e, "OMPI_COMM_WORLD_SIZE=") || starts_with(e, "PMIX_RANK=") ||
           starts_with(e, "PMI_RANK=");
  });
  std::vector<std::string> out;
  for (const auto& s : current) {
    if (starts_with(s, "OMPI_") || starts_with(s, "PMIX_") || starts_with(s, "PMI_")) {
      const bool user_mca = !rank && starts_with(s, "OMPI_MCA_") &&
                            std::find(startup.begin(), startup.end(), s) != startup.end();
      if (!user_mca) continue;
    }
    out.push_back(s);
  }
  return out;
}

std::vector<std::string> clean_environment() {
  return child_environment(std::vector<std::string>(environ, environ + env_size()),
                           kStartupEnvironment);
}

pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& opts) {
  if (argv.empty()) throw Error("spawn: empty command");
  if (opts.keep_fd >= 0 && opts.keep_fd_as <= 2) throw Error("spawn: keep_fd_as must be above 2");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  auto env =
      opts.stand_in ? std::vector<std::string>(environ, environ + env_size()) : clean_environment();
  for (const auto& d : opts.env_defaults)
    if (!has_key(env, d)) env.push_back(d);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  SpawnSetup s;
  add_file_actions(s, opts);
  set_signal_mask(s, opts.blocked_signals);
  short flags = opts.blocked_signals.empty() ? 0 : POSIX_SPAWN_SETSIGMASK;
  if (opts.new_process_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&s.attr, 0);
  }
  posix_spawnattr_setflags(&s.attr, flags);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &s.fa, &s.attr, args.data(), envp.data());
  if (rc != 0) throw Error(fmt::format("cannot start '{}': {}", argv[0], std::strerror(rc)));
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR)
      throw Error(fmt::format("waitpid for pid {} failed: {}", pid, std::strerror(errno)));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

int run_child(const std::vector<std::string>& argv) { return wait_exit(spawn(argv)); }

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&set, s);
  return set;
}

int run_passing_stop_on(const std::vector<std::string>& argv, SpawnOptions opts,
                        const std::function<void(int)>& on_stop) {
  sigset_t wait_for = stop_signals(), old;
  sigaddset(&wait_for, SIGCHLD);
  // Blocked before the child starts, so that no stop request can fall between.
  pthread_sigmask(SIG_BLOCK, &wait_for, &old);
  opts.blocked_signals = {SIGTERM, SIGINT};
  pid_t pid = 0;
  try {
    pid = spawn(argv, opts);
  } catch (...) {
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    throw;
  }
  int status = 0;
  while (true) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) {
      const int err = errno;
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      throw Error(
          fmt::format("waitpid for '{}' (pid {}) failed: {}", argv[0], pid, std::strerror(err)));
    }
    const timespec wake{1, 0};  // also re-checks the child if a SIGCHLD was merged
    const int sig = sigtimedwait(&wait_for, nullptr, &wake);
    if (sig > 0 && sig != SIGCHLD) {
      if (on_stop) on_stop(sig);
      kill(pid, SIGUSR1);
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}

namespace {

// Reads both pipes until both close, so that neither can fill up and block the child.
void drain(int out_fd, int err_fd, CommandResult& r) {
  pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
}

}  // namespace

CommandResult run_capture(const std::vector<std::string>& argv) {
  CommandResult r;
  int out[2], err[2];
  if (argv.empty() || pipe2(out, O_CLOEXEC) != 0) return r;
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    return r;
  }
  SpawnOptions o;
  o.stdin_null = true;
  o.stdout_fd = out[1];
  o.stderr_fd = err[1];
  pid_t pid = -1;
  try {
    pid = spawn(argv, o);
  } catch (const Error& e) {
    r.status = 127;
    r.err = e.what();
  }
  close(out[1]);
  close(err[1]);
  if (pid < 0) {
    close(out[0]);
    close(err[0]);
    return r;
  }
  drain(out[0], err[0], r);
  r.status = wait_exit(pid);
  return r;
}

std::vector<std::string> mpiexec_command(const std::string& mpiexec, int ranks,
                                         const std::vector<std::string>& args) {
  std::vector<std::string> cmd = {mpiexec, "-n", std::to_string(ranks), "--oversubscribe"};
  if (geteuid() == 0) cmd.push_back("--allow-run-as-root");
  cmd.insert(cmd.end(), args.begin(), args.end());
  return cmd;
}

std::string shell_line(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    bool plain = !a.empty() && a.find_first_of(" \t\n'\"\\$`*?[]{}()<>|&;#~") == std::string::npos;
    if (plain) {
      out += a;
    } else {
      std::string q = "'";
      for (char c : a) q += (c == '\'') ? std::string("'\\''") : std::string(1, c);
      out += q + "'";
    }
  }
  return out;
}

}  // namespace m3ret::launcher
