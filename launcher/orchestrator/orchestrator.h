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
#include <mutex>
#include <string>
#include <vector>

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

class Orchestrator {
 public:
  // `state` and `backend` must outlive the orchestrator. Records the runs of
  // the sweep in the state (existing rows are kept).
  Orchestrator(const Sweep& sweep, State& state, Backend& backend, OrchestratorOptions opts);

  // After a restart: every job recorded as `intent` is found in the backend by
  // name (then recorded as submitted) or submitted now. Idempotent.
  void reconcile();

  // One pass: polls active jobs, records checkpoints and evaluations, submits
  // what is ready within the backend's concurrency limit, rewrites the report
  // when something changed. Returns true when every run has ended.
  bool step();

  // Calls step() every `interval_s` until all runs ended or `stop` is set.
  // Holds `mutex` (if given) during each step.
  void run(double interval_s, const std::atomic<bool>& stop, std::mutex* mutex = nullptr);

  // Cancels a run's active jobs and marks it cancelled; retry makes a failed
  // or cancelled run pending again (its next train job resumes) and gives
  // its train, eval, shard and data jobs their whole retry budget again.
  // Throw m3ret::Error for an unknown run.
  void cancel_run(const std::string& run);
  void retry_run(const std::string& run);

  std::filesystem::path report_dir() const { return sweep_.work_dir / "report"; }
  const Sweep& sweep() const { return sweep_; }

 private:
  struct Ready;
  std::filesystem::path manifest_path() const;
  std::filesystem::path shards_dir(double fraction) const;
  std::string fraction_tag(double fraction) const;
  std::vector<std::string> config_args(const std::vector<std::string>& sets) const;
  // `m3ret ARGS`, under the backend's MPI launch prefix when ranks > 0.
  std::string m3ret_cmd(const std::vector<std::string>& args, int ranks, JobKind kind) const;

  bool poll_active();
  void submit(JobRow job, const std::vector<std::string>& after_ok = {});
  bool active_limit_reached();
  // When `scope` (a run, a fraction tag, "data") was last retried; 0 = never.
  double retried_at(const std::string& scope);
  // Returns true when the data/shards of `fraction` are ready; may submit jobs.
  bool ensure_data();
  bool ensure_shards(double fraction, std::string* pending_id);
  bool advance_run(const RunSpec& spec, const RunRow& row);
  bool scan_checkpoints(const RunSpec& spec, const RunRow& row);
  bool record_evaluation(const JobRow& job);
  void write_report();
  std::map<std::string, double> model_params();

  const Sweep& sweep_;
  State& state_;
  Backend& backend_;
  OrchestratorOptions opts_;
  int active_ = 0;
  bool first_step_ = true;
  bool model_info_failed_ = false;
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
