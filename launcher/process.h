// The one way m3ret starts a child process (library m3ret_process, used by
// the verbs that drive other verbs and by the orchestrator's backends).
//
// Every child gets this process's environment without the MPI launcher
// variables (OMPI_*, PMIX_*, PMI_*), so that a nested mpiexec (or sbatch,
// which exports the environment) starts a fresh MPI job, but with the Open MPI
// parameters (OMPI_MCA_*) the user or site set before m3ret started, and inherits no
// descriptor but its standard streams (and SpawnOptions::keep_fd), whatever
// their close-on-exec flags: a socket another thread opened a moment ago
// never leaks into a job. The one exception is a launcher's own stand-in
// child (SpawnOptions::stand_in).
//
// Built on posix_spawn rather than Boost.Process: Boost 1.74's PATH lookup
// (bp::search_path) needs the compiled Boost.Filesystem library, which m3ret
// does not depend on, and its bp::limit_handles (the way not to inherit
// descriptors) silently loses output captured with std_out > future.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace m3ret::launcher {

// Path of the running m3ret binary (/proc/self/exe).
std::filesystem::path self_path();

// This process's environment (KEY=VALUE) for a child: child_environment of
// environ and the environment as this process started (before MPI_Init).
std::vector<std::string> clean_environment();
// `current` without the MPI launcher variables (OMPI_*, PMIX_*, PMI_*), except
// the OMPI_MCA_* entries that `startup` holds unchanged (a user's or a site's
// MCA parameters, e.g. btl_tcp_if_include) when `startup` is not the
// environment of an MPI rank (no OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_RANK):
// a rank's OMPI_MCA_* come from its launcher and would bind a nested job to it.
std::vector<std::string> child_environment(const std::vector<std::string>& current,
                                           const std::vector<std::string>& startup);

struct SpawnOptions {
  std::vector<std::string> env_defaults;  // KEY=VALUE, added when the environment has no KEY
  bool new_process_group = false;         // the child leads a new process group (pgid = pid)
  bool stdin_null = false;                // stdin from /dev/null instead of ours
  int stdout_fd = -1, stderr_fd = -1;     // descriptors that become the child's 1 and 2
  int keep_fd = -1, keep_fd_as = -1;      // keep_fd becomes keep_fd_as (> 2) in the child
  // The child's signal mask is exactly these signals (empty: ours, inherited),
  // e.g. SIGTERM and SIGINT for an mpiexec that must not act on them itself.
  std::vector<int> blocked_signals;
  // A launcher that stands in for its child (`m3ret train --mpiexec`): the
  // child keeps every descriptor that is not close-on-exec (a job lock stays
  // held by what the job starts) and the MPI launcher variables (e.g. the
  // OMPI_MCA_* settings meant for that mpiexec).
  bool stand_in = false;
};

// Starts argv (argv[0] looked up in PATH) and returns its pid without waiting.
// Throws m3ret::Error naming argv[0] when it cannot be started.
pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& opts = {});

// Waits for a child; its exit status (128 + signal when killed).
int wait_exit(pid_t pid);

// Runs argv with our stdout/stderr and waits; its exit status.
int run_child(const std::vector<std::string>& argv);

// The signals that ask m3ret to stop: SIGTERM, SIGINT, SIGHUP and SIGUSR1.
sigset_t stop_signals();

// Runs argv (an mpiexec, typically) as a child that this process stands for
// until it exits, and passes a stop request on to it: the child starts with
// SIGTERM and SIGINT blocked (on SIGTERM Open MPI's mpiexec kills its ranks
// after one second and cannot be told to forward it), and a stop signal
// (stop_signals) sent to this process (alone, as `kill PID` does, or with
// its whole process group, as Slurm and a terminal do) is sent to the child as
// SIGUSR1, which mpiexec forwards to every rank. `on_stop` is called with each
// such signal as it arrives. Our own signal mask is restored before returning.
// Returns the child's exit status (128 + signal when killed); throws
// m3ret::Error naming argv[0] when it cannot be started.
int run_passing_stop_on(const std::vector<std::string>& argv, SpawnOptions opts,
                        const std::function<void(int)>& on_stop);

struct CommandResult {
  int status = -1;  // exit status; 127 when the program could not be started
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs argv with stdin from /dev/null, captures stdout and stderr, waits.
CommandResult run_capture(const std::vector<std::string>& argv);

// The mpiexec command line that starts `ranks` copies of `args` on this node:
// mpiexec -n RANKS [--oversubscribe] [--allow-run-as-root when root] ARGS...
std::vector<std::string> mpiexec_command(const std::string& mpiexec, int ranks,
                                         const std::vector<std::string>& args);

// Joins argv into one shell-quoted line (for logs, docs and job scripts).
std::string shell_line(const std::vector<std::string>& argv);

}  // namespace m3ret::launcher
