// Job backends: where the orchestrator's jobs run (local child processes,
// Slurm). One interface so that tests inject a fake that fails and preempts.
//
// Every backend runs a job's shell command through the same wrapper
// (job_wrapper_script) which writes JOB_DIR/backend_id when it starts and
// JOB_DIR/exit_code (atomically) when the command ends, so that the exit code
// survives the orchestrator and the scheduler forgetting the job.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "launcher/orchestrator/state.h"

namespace m3ret::orchestrator {

struct JobRequest {
  std::string name;  // unique, stable across restarts
  JobKind kind = JobKind::kTrain;
  std::string command;                // shell command (run with /bin/sh)
  std::filesystem::path job_dir;      // created by the backend; log at job_dir/log
  std::vector<std::string> after_ok;  // backend ids that must succeed first (may be ignored)
  int ranks = 1;                      // MPI ranks the command starts (with mpiexec inside)
};

struct Observed {
  JobState state = JobState::kSubmitted;  // submitted (queued), running or terminal
  int exit_code = -1;
  std::string reason;
};

// Observed::reason of a job that the backend cancelled (or that will never
// start) because a job in its after_ok list did not succeed. Such a job is
// not the run's failure: the orchestrator redoes the dependency (within its
// retry limit) and then submits the job again as a new attempt.
inline constexpr const char* kDependencyFailed = "dependency failed";

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Most jobs that may be queued or running at once.
  virtual int max_parallel() const = 0;
  // Submits; returns the backend id. Throws m3ret::Error when refused.
  virtual std::string submit(const JobRequest& job) = 0;
  // The state of a submitted job. A job the backend no longer knows and that
  // left no exit code is reported failed with reason "lost". Throws
  // m3ret::Error when the job's files or the scheduler cannot be read: the
  // job's state is then unknown, not lost (the orchestrator polls again).
  virtual Observed poll(const std::string& backend_id, const std::filesystem::path& job_dir) = 0;
  // Finds a submission made before a crash: the backend id of a job with this
  // name, if the backend (or the job dir) knows one.
  virtual std::optional<std::string> find(const std::string& name,
                                          const std::filesystem::path& job_dir) = 0;
  virtual void cancel(const std::string& backend_id) = 0;
  // Whether after_ok dependencies are honoured by the scheduler itself.
  virtual bool supports_dependencies() const { return false; }
  // Shell text (already quoted) that starts `ranks` MPI ranks of the command
  // that follows it in a job of `kind`, with `mpiexec` as the launcher. This
  // default starts them on the job's machine:
  // `MPIEXEC --bind-to none -n RANKS --oversubscribe [--allow-run-as-root]`.
  virtual std::string mpi_launch_prefix(JobKind kind, int ranks, const std::string& mpiexec) const;
};

// The shell script body that runs `command` with the exit-code protocol above.
// `id_expr` is the shell expression of the backend id ("$$" or "$SLURM_JOB_ID").
// With `watch_collective_timeout` (train jobs), the command's ranks report a
// collective timeout to JOB_DIR/collective-timeout ($M3RET_COLLECTIVE_TIMEOUT_FILE),
// and when it appears the wrapper ends the command and everything it started
// (a cut-off node would hold mpirun until Slurm declares it lost) and exits 3.
std::string job_wrapper_script(const std::string& command, const std::filesystem::path& job_dir,
                               const std::string& id_expr, bool watch_collective_timeout);

// Reads JOB_DIR/exit_code if the job ended. Throws m3ret::Error when the file
// exists but cannot be read (e.g. out of descriptors): never "no exit code".
std::optional<int> read_exit_code(const std::filesystem::path& job_dir);
// The text of a small job file; nullopt when it does not exist; throws
// m3ret::Error naming it when it cannot be opened or read for another reason.
std::optional<std::string> read_job_file(const std::filesystem::path& file);

// `after_spawn` (tests only) is called with the job's pid right after it
// started and before its id is recorded: throwing from it simulates a crash
// in that window.
std::unique_ptr<Backend> make_local_backend(int max_parallel,
                                            std::function<void(int pid)> after_spawn = {});
struct SlurmOptions;
std::unique_ptr<Backend> make_slurm_backend(const SlurmOptions& opts);

}  // namespace m3ret::orchestrator
