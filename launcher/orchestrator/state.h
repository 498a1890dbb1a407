// Durable orchestrator state in SQLite (WAL journal, every change in one
// transaction): runs, jobs, checkpoints, evaluations, events.
//
// Jobs follow a state machine; a job row is written in state `intent` BEFORE
// the backend is asked to submit it, and its name is unique and given to the
// backend (Slurm job name), so that after a crash between the two steps the
// orchestrator finds the submission by name instead of submitting twice.
//
//   intent -> submitted -> running -> succeeded | failed | preempted
//      |          |           '-----> cancelled
//      '----------'--> cancelled | failed (lost: unknown to the backend)
//
// Not thread-safe: one State per thread (SQLite serialises writers across
// processes; `m3ret status` reads while the orchestrator writes).
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

struct sqlite3;

namespace m3ret::orchestrator {

enum class JobState { kIntent, kSubmitted, kRunning, kSucceeded, kFailed, kPreempted, kCancelled };
enum class JobKind { kData, kShard, kTrain, kEval };
// A run: pending -> running -> succeeded | failed | cancelled; a retry makes a
// failed or cancelled run pending again. Stored by name (to_string).
enum class RunState { kPending, kRunning, kSucceeded, kFailed, kCancelled };

const char* to_string(JobState s);
const char* to_string(JobKind k);
JobState job_state_from(const std::string& s);
JobKind job_kind_from(const std::string& s);
const char* to_string(RunState s);
RunState run_state_from(const std::string& s);
// Compares with a state's name ("succeeded"), as stored and shown.
inline bool operator==(RunState s, const std::string& name) { return name == to_string(s); }
inline bool operator!=(RunState s, const std::string& name) { return !(s == name); }
std::ostream& operator<<(std::ostream& os, RunState s);
bool is_terminal(JobState s);
// Whether the state machine allows from -> to (same state is allowed: no-op).
bool transition_allowed(JobState from, JobState to);

struct JobRow {
  int64_t id = 0;
  std::string name;   // unique; the backend's job name
  std::string run;    // run name ("" for the data job)
  std::string group;  // shard jobs: the shard set they build
  JobKind kind = JobKind::kTrain;
  JobState state = JobState::kIntent;
  int attempt = 0;
  int64_t step = -1;       // eval jobs: the checkpoint step
  std::string backend_id;  // pid or Slurm job id; "" before submission
  std::string command;     // shell command the job runs
  std::string job_dir;     // logs, exit code
  int exit_code = -1;
  std::string reason;
  double created = 0, updated = 0;
};

struct RunRow {
  std::string name;
  std::string params_json;  // {"model.preset": "tiny", ...}
  double data_fraction = 1;
  std::string run_dir;
  std::string shards_dir;
  RunState state = RunState::kPending;
  int failures = 0;  // failed train attempts (preemptions do not count)
};

struct Evaluation {
  std::string run;
  int64_t step = 0;
  std::string modality;  // "xray", ...; "mean" for the mean over evaluated modalities
  std::string metric;    // "recall@1", "map@10", ...; "" for an absent row
  double value = 0;
  // Why the modality has no figure (no evaluable query, eval/retrieval.h);
  // "" for a metric row.
  std::string absent;
};

struct Event {
  int64_t id = 0;
  double time = 0;
  std::string run, job, message;
};

class State {
 public:
  // Opens (creating if needed) the database; throws m3ret::Error naming the
  // file when it cannot be opened or has another schema version.
  explicit State(const std::filesystem::path& db, bool read_only = false);
  ~State();
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // Key/value settings of the orchestrator (sweep file, backend, token).
  void set_meta(const std::string& key, const std::string& value);
  std::optional<std::string> meta(const std::string& key);

  void upsert_run(const RunRow& run);  // inserts, or keeps the existing row
  void set_run_state(const std::string& run, RunState state, const std::string& why);
  void add_run_failure(const std::string& run);
  // Makes a run pending again with its failure count reset.
  void retry_run(const std::string& run);
  std::vector<RunRow> runs();
  std::optional<RunRow> run(const std::string& name);

  // Records the intent to submit; returns the new job id. Throws if the name exists.
  int64_t add_job(const JobRow& job);
  // Moves a job along the state machine (throws m3ret::Error on an illegal
  // transition), with an event. backend_id/exit_code are stored when given.
  void transition(int64_t job, JobState to, const std::string& reason,
                  const std::optional<std::string>& backend_id = std::nullopt,
                  std::optional<int> exit_code = std::nullopt);
  std::vector<JobRow> jobs(const std::string& run = "");
  std::optional<JobRow> job(int64_t id);
  std::optional<JobRow> job_by_name(const std::string& name);

  // Returns true when the checkpoint was new.
  bool add_checkpoint(const std::string& run, int64_t step, const std::string& path);
  std::vector<std::pair<int64_t, std::string>> checkpoints(const std::string& run);
  // Replaces the evaluation of (run, step), metric and absent rows, in one transaction.
  void set_evaluations(const std::string& run, int64_t step, const std::vector<Evaluation>& rows);
  // Metric and absent rows, ordered by run, step, modality, metric.
  std::vector<Evaluation> evaluations(const std::string& run = "");

  void event(const std::string& run, const std::string& job, const std::string& message);
  std::vector<Event> events(int64_t after_id = 0, int limit = 200);

 private:
  void exec(const std::string& sql);
  class Tx;
  sqlite3* db_ = nullptr;
  std::filesystem::path path_;
};

double now_seconds();

}  // namespace m3ret::orchestrator
