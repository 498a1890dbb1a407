#include "launcher/orchestrator/orchestrator.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "eval/report.h"
#include "launcher/orchestrator/report.h"
#include "launcher/orchestrator/status.h"
#include "launcher/process.h"

namespace m3ret::orchestrator {
namespace fs = std::filesystem;
namespace {

using launcher::shell_line;

constexpr int kSigusr1ExitCode = 128 + 10;

std::optional<JobRow> latest(const std::vector<JobRow>& jobs, JobKind kind, int64_t step = -1) {
  std::optional<JobRow> out;
  for (const auto& j : jobs) {
    if (j.kind == kind && (step < 0 || j.step == step)) out = j;
  }
  return out;
}

// Failed jobs of `kind` (and `step`) created at or after `since` (the last retry).
int failed_attempts(const std::vector<JobRow>& jobs, JobKind kind, double since,
                    int64_t step = -1) {
  int n = 0;
  for (const auto& j : jobs) {
    if (j.kind == kind && (step < 0 || j.step == step) && j.state == JobState::kFailed &&
        j.created >= since)
      ++n;
  }
  return n;
}

bool active(JobState s) { return s == JobState::kSubmitted || s == JobState::kRunning; }

}  // namespace

std::vector<Evaluation> read_evaluations(const fs::path& report_json, const std::string& run,
                                         int64_t step) {
  const eval::Report report = eval::read_report(report_json);  // the evaluated encoder
  std::vector<Evaluation> rows;
  std::map<std::string, std::pair<double, int>> mean;  // metric -> (sum, evaluated modalities)
  for (const auto& row : report.per_modality) {
    const eval::Metrics& m = row.metrics;
    if (!m.evaluated()) {
      rows.push_back({run, step, row.name(), "", 0, eval::absent_reason(m)});
      continue;
    }
    rows.push_back({run, step, row.name(), "queries", static_cast<double>(m.queries), ""});
    std::vector<std::pair<std::string, double>> scores;
    for (const auto& [k, v] : m.recall) scores.emplace_back(fmt::format("recall@{}", k), v);
    for (const auto& [k, v] : m.precision) scores.emplace_back(fmt::format("precision@{}", k), v);
    scores.emplace_back(fmt::format("map@{}", m.map_k), m.map_at_k);
    for (const auto& [metric, v] : scores) {
      rows.push_back({run, step, row.name(), metric, v, ""});
      mean[metric].first += v;
      mean[metric].second += 1;
    }
  }
  for (const auto& [metric, sum] : mean) {
    rows.push_back({run, step, "mean", metric, sum.first / sum.second, ""});
  }
  return rows;
}

Orchestrator::Orchestrator(const Sweep& sweep, State& state, Backend& backend,
                           OrchestratorOptions opts)
    : sweep_(sweep), opts_(std::move(opts)), state_(state), backend_(backend) {
  state_.set_meta("sweep_file", sweep_.file.string());
  state_.set_meta("sweep_name", sweep_.name);
  state_.set_meta("backend", backend_.name());
  state_.set_meta("work_dir", sweep_.work_dir.string());
  for (const auto& spec : sweep_.runs) {
    nlohmann::json params(spec.params);
    state_.upsert_run({spec.name, params.dump(), spec.data_fraction,
                       (sweep_.work_dir / "runs" / spec.name).string(),
                       shards_dir(spec.data_fraction).string(), RunState::kPending, 0});
  }
}

fs::path Orchestrator::manifest_path() const {
  return sweep_.manifest.empty() ? sweep_.work_dir / "data" / "manifest.csv" : sweep_.manifest;
}

std::string Orchestrator::fraction_tag(double fraction) const {
  return fmt::format("frac-{:g}", fraction);
}

fs::path Orchestrator::shards_dir(double fraction) const {
  return sweep_.work_dir / "shards" / fraction_tag(fraction);
}

std::vector<std::string> Orchestrator::config_args(const std::vector<std::string>& sets) const {
  std::vector<std::string> out = {"--config", sweep_.base_config.string()};
  for (const auto& s : sets) {
    out.push_back("--set");
    out.push_back(s);
  }
  return out;
}

std::string Orchestrator::m3ret_cmd(const std::vector<std::string>& args, int ranks,
                                    JobKind kind) const {
  std::vector<std::string> argv = {opts_.m3ret.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  if (ranks <= 0) return shell_line(argv);
  return backend_.mpi_launch_prefix(kind, ranks, opts_.mpiexec) + " " + shell_line(argv);
}

void Orchestrator::submit(JobRow job, const std::vector<std::string>& after_ok) {
  job.job_dir = (sweep_.work_dir / "jobs" / job.name).string();
  job.id = state_.add_job(job);  // the intent, durable before the backend hears of it
  JobRequest req{job.name, job.kind, job.command, job.job_dir, after_ok, sweep_.ranks};
  try {
    std::string id = backend_.submit(req);
    state_.transition(job.id, JobState::kSubmitted, "", id);
    ++active_;
    spdlog::info("orchestrate: submitted {} ({})", job.name, id);
  } catch (const std::exception& e) {
    state_.transition(job.id, JobState::kFailed, std::string("submission failed: ") + e.what());
    spdlog::warn("orchestrate: {}: submission failed: {}", job.name, e.what());
  }
}

bool Orchestrator::active_limit_reached() { return active_ >= backend_.max_parallel(); }

double Orchestrator::retried_at(const std::string& scope) {
  auto v = state_.meta("retried_at." + scope);
  return v ? std::stod(*v) : 0.0;
}

void Orchestrator::reconcile() {
  MutexLock lock(mu_);
  for (const auto& job : state_.jobs()) {
    if (job.state != JobState::kIntent) continue;
    if (auto id = backend_.find(job.name, job.job_dir)) {
      state_.transition(job.id, JobState::kSubmitted, "found in the backend after a restart", *id);
      spdlog::info("orchestrate: reconciled {} with backend job {}", job.name, *id);
      continue;
    }
    std::vector<std::string> after_ok;
    if (job.kind == JobKind::kTrain) {
      // A train job is only submitted before its shards exist with after_ok on
      // the shard job: find that dependency again (reconciled just before, as
      // its intent is older), or let advance_run submit a new attempt.
      auto row = state_.run(job.run);
      if (row && !fs::is_regular_file(fs::path(row->shards_dir) / "index.json")) {
        std::optional<JobRow> shard;
        for (auto& j : state_.jobs("")) {
          if (j.kind == JobKind::kShard && j.group == fraction_tag(row->data_fraction)) shard = j;
        }
        if (!backend_.supports_dependencies() || !shard || !active(shard->state)) {
          state_.transition(job.id, JobState::kCancelled,
                            std::string(kDependencyFailed) + ": shards not ready after a restart");
          continue;
        }
        after_ok = {shard->backend_id};
      }
    }
    JobRequest req{job.name, job.kind, job.command, job.job_dir, after_ok, sweep_.ranks};
    try {
      std::string id = backend_.submit(req);
      state_.transition(job.id, JobState::kSubmitted, "submitted after a restart", id);
    } catch (const std::exception& e) {
      state_.transition(job.id, JobState::kFailed, std::string("submission failed: ") + e.what());
    }
  }
}

bool Orchestrator::poll_active() {
  bool changed = false;
  active_ = 0;
  for (const auto& job : state_.jobs()) {
    if (!active(job.state)) continue;
    Observed o;
    try {
      o = backend_.poll(job.backend_id, job.job_dir);
    } catch (const std::exception& e) {
      // Unknown is not lost: keep the state and poll again next time.
      spdlog::warn("orchestrate: cannot poll {}: {}", job.name, e.what());
      ++active_;
      continue;
    }
    JobState to = o.state;
    if (job.kind == JobKind::kTrain && to == JobState::kFailed &&
        (o.exit_code == sweep_.preempted_exit_code || o.exit_code == kSigusr1ExitCode)) {
      to = JobState::kPreempted;
    }
    if (to == JobState::kSubmitted && job.state == JobState::kRunning)
      to = JobState::kRunning;  // requeued
    if (to != job.state) {
      std::string reason = o.reason;
      if (job.kind == JobKind::kEval && to == JobState::kSucceeded && !record_evaluation(job)) {
        // A job that exited 0 without a readable report did not succeed.
        to = JobState::kFailed;
        reason = "exit code 0 but no readable report.json";
      }
      state_.transition(job.id, to, reason, std::nullopt,
                        o.exit_code >= 0 ? std::optional<int>(o.exit_code) : std::nullopt);
      if (job.kind == JobKind::kTrain && to == JobState::kFailed) state_.add_run_failure(job.run);
      changed = true;
    }
    if (active(to)) ++active_;
  }
  return changed;
}

bool Orchestrator::record_evaluation(const JobRow& job) {
  fs::path report =
      sweep_.work_dir / "evals" / job.run / fmt::format("step-{:09d}", job.step) / "report.json";
  try {
    state_.set_evaluations(job.run, job.step, read_evaluations(report, job.run, job.step));
    return true;
  } catch (const std::exception& e) {
    state_.event(job.run, job.name, std::string("evaluation not recorded: ") + e.what());
    return false;
  }
}

bool Orchestrator::ensure_data() {
  fs::path manifest = manifest_path();
  if (!sweep_.manifest.empty()) {
    if (!fs::is_regular_file(manifest)) {
      throw Error(fmt::format("{}: sweep.manifest '{}' does not exist", sweep_.file.string(),
                              manifest.string()));
    }
    return true;
  }
  auto jobs = state_.jobs("");
  auto last = latest(jobs, JobKind::kData);
  if (last && last->state == JobState::kSucceeded && fs::is_regular_file(manifest)) return true;
  if (last && active(last->state)) return false;
  if (last && failed_attempts(jobs, JobKind::kData, retried_at("data")) > sweep_.max_retries) {
    throw Error(fmt::format("the data job failed {} times; see {}/log", sweep_.max_retries + 1,
                            last->job_dir));
  }
  if (active_limit_reached()) return false;
  JobRow job;
  job.kind = JobKind::kData;
  job.attempt = last ? last->attempt + 1 : 0;
  job.name = fmt::format("{}-data-a{}", sweep_.name, job.attempt);
  auto args = config_args(sweep_.sets);
  args.insert(args.begin(), "synth");
  args.insert(args.end(), {"--out", manifest.parent_path().string()});
  job.command = m3ret_cmd(args, 0, JobKind::kData);
  submit(job);
  return false;
}

// Ready: index.json exists. Pending: the shard job's backend id in *pending_id.
bool Orchestrator::ensure_shards(double fraction, std::string* pending_id) {
  fs::path dir = shards_dir(fraction);
  if (fs::is_regular_file(dir / "index.json")) return true;
  std::string group = fraction_tag(fraction);
  std::vector<JobRow> jobs;
  for (auto& j : state_.jobs(""))
    if (j.kind == JobKind::kShard && j.group == group) jobs.push_back(j);
  auto last = latest(jobs, JobKind::kShard);
  if (last && active(last->state)) {
    *pending_id = last->backend_id;
    return false;
  }
  if (last && failed_attempts(jobs, JobKind::kShard, retried_at(group)) > sweep_.max_retries) {
    throw Error(fmt::format("shard job for {} failed {} times; see {}/log", group,
                            sweep_.max_retries + 1, last->job_dir));
  }
  if (!ensure_data() || active_limit_reached()) return false;
  fs::path manifest = manifest_path();
  if (fraction < 1.0) {
    fs::path subset = sweep_.work_dir / "shards" / (group + "-manifest.csv");
    write_manifest_fraction(manifest, fraction, subset);
    manifest = subset;
  }
  JobRow job;
  job.kind = JobKind::kShard;
  job.group = group;
  job.attempt = last ? last->attempt + 1 : 0;
  job.name = fmt::format("{}-shard-{}-a{}", sweep_.name, group, job.attempt);
  auto args = config_args(sweep_.sets);
  args.insert(args.begin(), "shard");
  args.insert(args.end(), {"--manifest", manifest.string(), "--out", dir.string()});
  job.command = m3ret_cmd(args, sweep_.ranks, JobKind::kShard);
  submit(job);
  if (auto j = state_.job_by_name(job.name); j && active(j->state)) *pending_id = j->backend_id;
  return false;
}

bool Orchestrator::scan_checkpoints(const RunSpec& spec, const RunRow& row) {
  bool changed = false;
  fs::path ck = fs::path(row.run_dir) / "checkpoints";
  std::error_code ec;
  if (fs::is_directory(ck, ec)) {
    for (const auto& e : fs::directory_iterator(ck, ec)) {
      std::string n = e.path().filename().string();
      // step-* folders are renamed into place when complete (trainer/checkpoint.h).
      if (n.rfind("step-", 0) != 0 || !fs::is_regular_file(e.path() / "manifest.json")) continue;
      int64_t step = std::stoll(n.substr(5));
      if (state_.add_checkpoint(spec.name, step, e.path().string())) changed = true;
    }
  }
  auto jobs = state_.jobs(spec.name);
  const double since = retried_at(spec.name);
  for (const auto& [step, path] : state_.checkpoints(spec.name)) {
    auto last = latest(jobs, JobKind::kEval, step);
    if (last && (active(last->state) || last->state == JobState::kSucceeded)) continue;
    if (last && failed_attempts(jobs, JobKind::kEval, since, step) > sweep_.max_retries) continue;
    if (!fs::is_directory(path)) continue;  // removed (keep_last) before it was evaluated
    if (active_limit_reached()) break;
    fs::path out = sweep_.work_dir / "evals" / spec.name / fmt::format("step-{:09d}", step);
    auto embed = config_args(spec.sets);
    embed.insert(embed.begin(), "embed");
    embed.insert(embed.end(), {"--checkpoint", path, "--shards", row.shards_dir, "--out",
                               (out / "embeddings.h5").string()});
    auto eval = config_args(spec.sets);
    eval.insert(eval.begin(), "eval");
    eval.insert(eval.end(), {"--embeddings", (out / "embeddings.h5").string(), "--out",
                             (out / "report.json").string()});
    JobRow job;
    job.kind = JobKind::kEval;
    job.run = spec.name;
    job.step = step;
    job.attempt = last ? last->attempt + 1 : 0;
    job.name = fmt::format("{}-{}-eval-{}-a{}", sweep_.name, spec.name, step, job.attempt);
    job.command = "mkdir -p " + shell_line({out.string()}) + " && " +
                  m3ret_cmd(embed, sweep_.ranks, JobKind::kEval) + " && " +
                  m3ret_cmd(eval, 0, JobKind::kEval);
    submit(job);
    changed = true;
  }
  return changed;
}

bool Orchestrator::advance_run(const RunSpec& spec, const RunRow& row) {
  if (row.state == RunState::kSucceeded || row.state == RunState::kFailed ||
      row.state == RunState::kCancelled) {
    return false;
  }
  bool changed = false;
  bool retried = row.state == RunState::kPending;  // fresh, or made pending again by retry_run
  if (row.state == RunState::kPending) {
    state_.set_run_state(spec.name, RunState::kRunning, "");
    changed = true;
  }
  std::string shard_id;
  bool shards_ready = false;
  try {
    shards_ready = ensure_shards(spec.data_fraction, &shard_id);
  } catch (const Error& e) {
    state_.set_run_state(spec.name, RunState::kFailed, e.what());
    return true;
  }
  auto jobs = state_.jobs(spec.name);
  auto train = latest(jobs, JobKind::kTrain);
  bool train_done = train && train->state == JobState::kSucceeded;
  // Cancelled by the backend because its shard job failed: not the run's
  // failure; a new attempt follows the shard job's retry.
  bool dependency_failed = train && train->state == JobState::kCancelled &&
                           train->reason.rfind(kDependencyFailed, 0) == 0;
  bool want_train = !train || train->state == JobState::kPreempted ||
                    train->state == JobState::kFailed || dependency_failed ||
                    (retried && train->state == JobState::kCancelled);
  if (train && train->state == JobState::kCancelled && !retried && !dependency_failed) {
    state_.set_run_state(spec.name, RunState::kCancelled,
                         "train job cancelled outside the orchestrator");
    return true;
  }
  if (train && train->state == JobState::kFailed && row.failures > sweep_.max_retries) {
    state_.set_run_state(
        spec.name, RunState::kFailed,
        fmt::format("train failed {} times; see {}/log", row.failures, train->job_dir));
    return true;
  }
  bool can_depend = backend_.supports_dependencies() && !shard_id.empty();
  if (want_train && (shards_ready || can_depend) && !active_limit_reached()) {
    JobRow job;
    job.kind = JobKind::kTrain;
    job.run = spec.name;
    job.attempt = train ? train->attempt + 1 : 0;
    job.name = fmt::format("{}-{}-train-a{}", sweep_.name, spec.name, job.attempt);
    // keep_last=0 first: every checkpoint stays until it is evaluated (the sweep may override).
    std::vector<std::string> sets = {"train.keep_last=0"};
    sets.insert(sets.end(), spec.sets.begin(), spec.sets.end());
    auto args = config_args(sets);
    args.insert(args.begin(), "train");
    args.insert(args.end(),
                {"--shards", row.shards_dir, "--run-dir", row.run_dir, "--resume", "auto"});
    job.command = m3ret_cmd(args, sweep_.ranks, JobKind::kTrain);
    submit(job, shards_ready ? std::vector<std::string>{} : std::vector<std::string>{shard_id});
    changed = true;
  }
  if (shards_ready && scan_checkpoints(spec, row)) changed = true;

  if (train_done) {
    jobs = state_.jobs(spec.name);
    auto cks = state_.checkpoints(spec.name);
    bool all = !cks.empty();
    bool any_exhausted = false;
    const double since = retried_at(spec.name);
    for (const auto& [step, path] : cks) {
      auto ev = latest(jobs, JobKind::kEval, step);
      if (!ev || ev->state != JobState::kSucceeded) all = false;
      if (failed_attempts(jobs, JobKind::kEval, since, step) > sweep_.max_retries ||
          (!fs::is_directory(path) && (!ev || ev->state != JobState::kSucceeded))) {
        any_exhausted = true;
      }
    }
    bool evals_active = std::any_of(jobs.begin(), jobs.end(), [](const JobRow& j) {
      return j.kind == JobKind::kEval && active(j.state);
    });
    if (all) {
      state_.set_run_state(spec.name, RunState::kSucceeded,
                           fmt::format("{} checkpoints evaluated", cks.size()));
      changed = true;
    } else if (any_exhausted && !evals_active) {
      state_.set_run_state(spec.name, RunState::kFailed, "an evaluation failed after every retry");
      changed = true;
    } else if (cks.empty()) {
      state_.set_run_state(spec.name, RunState::kFailed, "train succeeded but wrote no checkpoint");
      changed = true;
    }
  }
  return changed;
}

bool Orchestrator::step() {
  MutexLock lock(mu_);
  return step_locked();
}

bool Orchestrator::step_locked() {
  bool changed = poll_active();
  if (first_step_) {
    changed = true;  // the report exists from the start
    first_step_ = false;
  }
  for (const auto& spec : sweep_.runs) {
    auto row = state_.run(spec.name);
    if (row && advance_run(spec, *row)) changed = true;
  }
  if (changed) write_report();
  for (const auto& r : state_.runs()) {
    if (r.state == RunState::kPending || r.state == RunState::kRunning) return false;
  }
  return true;
}

void Orchestrator::run(double interval_s, const std::atomic<bool>& stop) {
  while (!stop.load()) {
    if (step()) return;
    auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(interval_s);
    while (!stop.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

void Orchestrator::cancel_run(const std::string& run) {
  MutexLock lock(mu_);
  if (!state_.run(run)) throw Error(fmt::format("no run '{}' in this sweep", run));
  for (const auto& job : state_.jobs(run)) {
    if (active(job.state)) {
      backend_.cancel(job.backend_id);
      state_.transition(job.id, JobState::kCancelled, "cancelled by request");
    } else if (job.state == JobState::kIntent) {
      state_.transition(job.id, JobState::kCancelled, "cancelled by request");
    }
  }
  state_.set_run_state(run, RunState::kCancelled, "by request");
}

void Orchestrator::retry_run(const std::string& run) {
  MutexLock lock(mu_);
  auto row = state_.run(run);
  if (!row) throw Error(fmt::format("no run '{}' in this sweep", run));
  if (row->state != RunState::kFailed && row->state != RunState::kCancelled) {
    throw Error(fmt::format("run '{}' is {}; only a failed or cancelled run can be retried", run,
                            to_string(row->state)));
  }
  // advance_run resubmits the train job (a new attempt, --resume auto) and
  // the evaluations that are missing; every job kind the run needs gets its
  // whole retry budget again (failures before now no longer count).
  std::string now = fmt::format("{:.6f}", now_seconds());
  for (const auto& scope : {run, fraction_tag(row->data_fraction), std::string("data")}) {
    state_.set_meta("retried_at." + scope, now);
  }
  state_.retry_run(run);
}

// Asked once per run (kept in the state's meta): the config may change any
// model key, so the count comes from the real config resolution.
std::map<std::string, double> Orchestrator::model_params() {
  std::map<std::string, double> out;
  const bool model_axis = std::any_of(sweep_.axes.begin(), sweep_.axes.end(), [](const auto& a) {
    return a.first.rfind("model.", 0) == 0 && a.second.size() > 1;
  });
  if (!model_axis || opts_.model_info.empty() || model_info_failed_) return out;
  for (const auto& spec : sweep_.runs) {
    const std::string key = "encoder_params." + spec.name;
    auto known = state_.meta(key);
    if (!known) {
      std::vector<std::string> argv = {opts_.model_info.string(), "model"};
      for (const auto& a : config_args(spec.sets)) argv.push_back(a);
      argv.push_back("--json");
      const auto r = launcher::run_capture(argv);
      try {
        known = std::to_string(nlohmann::json::parse(r.out).at("encoder_params").get<int64_t>());
      } catch (const std::exception& e) {
        spdlog::warn("orchestrate: no parameter count for {} from '{} model' (exit {}): {}",
                     spec.name, opts_.model_info.string(), r.status,
                     r.err.empty() ? e.what() : r.err);
        model_info_failed_ = true;
        return {};
      }
      state_.set_meta(key, *known);
    }
    out[spec.name] = std::stod(*known);
  }
  return out;
}

void Orchestrator::write_report() {
  try {
    write_scaling_report(state_, report_dir(), {opts_.plots, model_params()});
    write_status_page(state_, report_dir());
  } catch (const std::exception& e) {
    spdlog::warn("orchestrate: report not written: {}", e.what());
  }
}

}  // namespace m3ret::orchestrator
