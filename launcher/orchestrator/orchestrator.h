// The orchestrator: turns a sweep into jobs and drives them to the end.
//
// Each run is a chain: data (`m3ret synth`, once per sweep, when the sweep
// names no manifest) -> shard (once per data fraction, skipped when
// SHARDS/index.json exists) -> train (`--resume auto`; resubmitted after a
// preemption, and after a failure up to max_retries) -> one eval job per
// checkpoint as it appears (`m3ret embed` then `m3ret eval`) -> the scaling
// report (work_dir/report/).
//
// Every decision is a function of the SQLite state, the backend's answers and
// the run folders, so `step()` may be called on a freshly started process
// after a kill -9 (call `reconcile()` first): a job recorded as `intent` is
// looked up by name in the backend before anything is submitted again.
//
// Work folder layout (sweep.work_dir):
//   state.db            the SQLite state
//   data/               generated dataset (when no manifest is given)
//   shards/frac-F/      shards of data fraction F (manifest.csv = the subset)
//   runs/RUN/           train run folders (checkpoints/, metrics.jsonl, ...)
//   evals/RUN/step-N/   embeddings.h5, report.json of each checkpoint
//   jobs/JOB/           job.sh or job.sbatch, command.sh, log, exit_code
//   report/             scaling.md, scaling.csv, plot_data.json, *.png, status.html
#pragma once

#include <atomic>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/mutex.h"
#include "launcher/orchestrator/backend.h"
#include "launcher/orchestrator/report.h"
#include "launcher/orchestrator/state.h"
#include "launcher/orchestrator/sweep.h"

namespace m3ret::orchestrator {

struct OrchestratorOptions {
  std::filesystem::path m3ret = "m3ret";  // the binary jobs run
  std::string mpiexec = "mpiexec";        // launcher inside jobs (local: from [local])
  PlotOptions plots;                      // how the report's charts are drawn
  // The m3ret binary asked for each run's encoder parameter count (`m3ret
  // model --json`) when the sweep varies a model.* key; "" = not asked (the
  // model-size chart then shows the presets in size order).
  std::filesystem::path model_info;
};

// Thread-safe: every public method holds the orchestrator's mutex while it
// works on the state, so the status server's thread may cancel or retry runs
// and read the state (with_state) while run() steps on another thread.
class Orchestrator {
 public:
  // `state` and `backend` must outlive the orchestrator. Records the runs of
  // the sweep in the state (existing rows are kept).
  Orchestrator(const Sweep& sweep, State& state, Backend& backend, OrchestratorOptions opts);

  // After a restart: every job recorded as `intent` is found in the backend by
  // name (then recorded as submitted) or submitted now. Idempotent.
  void reconcile() M3RET_EXCLUDES(mu_);

  // One pass: polls active jobs, records checkpoints and evaluations, submits
  // what is ready within the backend's concurrency limit, rewrites the report
  // when something changed. Returns true when every run has ended.
  bool step() M3RET_EXCLUDES(mu_);

  // Calls step() every `interval_s` until all runs ended or `stop` is set.
  void run(double interval_s, const std::atomic<bool>& stop) M3RET_EXCLUDES(mu_);

  // Cancels a run's active jobs and marks it cancelled; retry makes a failed
  // or cancelled run pending again (its next train job resumes) and gives
  // its train, eval, shard and data jobs their whole retry budget again.
  // Throw m3ret::Error for an unknown run.
  void cancel_run(const std::string& run) M3RET_EXCLUDES(mu_);
  void retry_run(const std::string& run) M3RET_EXCLUDES(mu_);

  // Calls f(state) under the orchestrator's mutex and returns its result:
  // how another thread reads (or writes) the state consistently.
  template <typename F>
  auto with_state(F&& f) M3RET_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return f(state_);
  }

  std::filesystem::path report_dir() const { return sweep_.work_dir / "report"; }
  const Sweep& sweep() const { return sweep_; }

 private:
  struct Ready;
  std::filesystem::path manifest_path() const;
  std::filesystem::path shards_dir(double fraction) const;
  std::string fraction_tag(double fraction) const;
  std::vector<std::string> config_args(const std::vector<std::string>& sets) const;
  // `m3ret ARGS`, under the backend's MPI launch prefix when ranks > 0.
  std::string m3ret_cmd(const std::vector<std::string>& args, int ranks, JobKind kind) const
      M3RET_REQUIRES(mu_);

  bool step_locked() M3RET_REQUIRES(mu_);
  bool poll_active() M3RET_REQUIRES(mu_);
  void submit(JobRow job, const std::vector<std::string>& after_ok = {}) M3RET_REQUIRES(mu_);
  bool active_limit_reached() M3RET_REQUIRES(mu_);
  // When `scope` (a run, a fraction tag, "data") was last retried; 0 = never.
  double retried_at(const std::string& scope) M3RET_REQUIRES(mu_);
  // Returns true when the data/shards of `fraction` are ready; may submit jobs.
  bool ensure_data() M3RET_REQUIRES(mu_);
  bool ensure_shards(double fraction, std::string* pending_id) M3RET_REQUIRES(mu_);
  bool advance_run(const RunSpec& spec, const RunRow& row) M3RET_REQUIRES(mu_);
  bool scan_checkpoints(const RunSpec& spec, const RunRow& row) M3RET_REQUIRES(mu_);
  bool record_evaluation(const JobRow& job) M3RET_REQUIRES(mu_);
  void write_report() M3RET_REQUIRES(mu_);
  std::map<std::string, double> model_params() M3RET_REQUIRES(mu_);

  // Fixed after construction.
  const Sweep& sweep_;
  OrchestratorOptions opts_;

  mutable Mutex mu_;
  State& state_ M3RET_GUARDED_BY(mu_);
  Backend& backend_ M3RET_GUARDED_BY(mu_);
  int active_ M3RET_GUARDED_BY(mu_) = 0;
  bool first_step_ M3RET_GUARDED_BY(mu_) = true;
  bool model_info_failed_ M3RET_GUARDED_BY(mu_) = false;
};

// Reads the evaluated encoder's per-modality rows of REPORT.json with eval's
// reader (eval/report.h) into evaluation rows: queries, recall@k, precision@k
// and map@K of each evaluated modality, one absent row (its reason) for each
// modality with no evaluable query, and "mean" over the evaluated modalities
// (no mean when none is). Throws m3ret::Error naming the file when it is not a
// retrieval report.
std::vector<Evaluation> read_evaluations(const std::filesystem::path& report_json,
                                         const std::string& run, int64_t step);

}  // namespace m3ret::orchestrator
