// A scripted in-memory job backend for orchestrator tests: it "runs" each job
// over a few polls, writes what the real verbs would (checkpoints, reports,
// shard index, manifest) and injects failures and preemptions.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "eval/report.h"
#include "launcher/orchestrator/backend.h"

namespace m3ret::testing {

// One per-modality row of a fake retrieval report (ks 1 and 5); queries == 0
// makes it absent (no candidate from another patient).
struct FakeRow {
  std::string modality;
  int64_t queries = 0;
  double r1 = 0, r5 = 0, map5 = 0;
};

// A retrieval report as `m3ret eval` writes it (eval/report.h), with one encoder.
inline eval::Report fake_report(const std::vector<FakeRow>& rows) {
  eval::Report r;
  r.ks = {1, 5};
  r.split = "test";
  r.relevance = "shared-label";
  for (const auto& row : rows) {
    eval::Metrics m;
    m.queries = row.queries;
    m.skipped_no_candidate = row.queries == 0 ? 1 : 0;
    m.gallery = row.queries;
    m.recall = {{1, row.r1}, {5, row.r5}};
    m.precision = {{1, row.r1}, {5, row.r5 / 5}};
    m.map_k = 5;
    m.map_at_k = row.map5;
    r.per_modality.push_back({row.modality, row.modality, m});
    r.samples += row.queries + m.skipped_no_candidate;
  }
  return r;
}

class FakeBackend : public orchestrator::Backend {
 public:
  struct Job {
    orchestrator::JobRequest req;
    int polls = 0;
    bool cancelled = false;
    int exit_code = 0;
  };
  int max_parallel_ = 4;
  int polls_to_finish = 2;
  int steps_per_train = 2;                // checkpoints a successful train attempt writes
  std::map<std::string, int> exit_codes;  // job name -> exit code to inject
  std::map<std::string, std::string> jobs_by_id_name;
  std::vector<std::string> submitted;  // every submission, by name, in order
  std::map<std::string, Job> jobs;     // by id
  int max_running_seen = 0;
  // Honour after_ok like Slurm with --kill-on-invalid-dep=yes: a job waits
  // (submitted) until its dependencies end, and is cancelled with
  // kDependencyFailed when one of them failed.
  bool dependencies = false;

  std::string name() const override { return "fake"; }
  int max_parallel() const override { return max_parallel_; }
  bool supports_dependencies() const override { return dependencies; }

  std::string submit(const orchestrator::JobRequest& req) override {
    std::string id = std::to_string(1000 + submitted.size());
    submitted.push_back(req.name);
    jobs[id] = Job{req};
    std::filesystem::create_directories(req.job_dir);
    std::ofstream(req.job_dir / "backend_id") << id;
    int running = 0;
    for (auto& [i, j] : jobs)
      if (j.polls < polls_to_finish && !j.cancelled) ++running;
    max_running_seen = std::max(max_running_seen, running);
    return id;
  }

  orchestrator::Observed poll(const std::string& id, const std::filesystem::path&) override {
    auto& j = jobs.at(id);
    if (j.cancelled) return {orchestrator::JobState::kCancelled, -1, "cancelled"};
    for (const auto& dep : j.req.after_ok) {
      const auto& d = jobs.at(dep);
      bool ended = d.polls >= polls_to_finish;
      if (d.cancelled || (ended && d.exit_code != 0)) {
        j.cancelled = true;
        return {orchestrator::JobState::kCancelled, -1,
                std::string(orchestrator::kDependencyFailed) + " (DependencyNeverSatisfied)"};
      }
      if (!ended) return {orchestrator::JobState::kSubmitted, -1, "PENDING (Dependency)"};
    }
    if (++j.polls < polls_to_finish) return {orchestrator::JobState::kRunning, -1, ""};
    if (j.polls == polls_to_finish) finish(j);
    int rc = j.exit_code;
    return {rc == 0 ? orchestrator::JobState::kSucceeded : orchestrator::JobState::kFailed, rc,
            fmt::format("exit code {}", rc)};
  }

  std::optional<std::string> find(const std::string& name, const std::filesystem::path&) override {
    for (auto& [id, j] : jobs)
      if (j.req.name == name) return id;
    return std::nullopt;
  }

  void cancel(const std::string& id) override { jobs.at(id).cancelled = true; }

  int count(const std::string& name) const {
    return static_cast<int>(std::count(submitted.begin(), submitted.end(), name));
  }

 private:
  static std::string arg_after(const std::string& cmd, const std::string& flag, size_t from = 0) {
    auto p = cmd.find(flag + " ", from);
    if (p == std::string::npos) return "";
    p += flag.size() + 1;
    return cmd.substr(p, cmd.find(' ', p) - p);
  }

  void finish(Job& j) {
    auto it = exit_codes.find(j.req.name);
    j.exit_code = it == exit_codes.end() ? 0 : it->second;
    const std::string& cmd = j.req.command;
    namespace fs = std::filesystem;
    if (cmd.find(" synth ") != std::string::npos && j.exit_code == 0) {
      fs::path out = arg_after(cmd, "--out");
      fs::create_directories(out);
      std::ofstream(out / "manifest.csv") << "path,modality,labels,group,split\n";
    } else if (cmd.find(" shard ") != std::string::npos && j.exit_code == 0) {
      fs::path out = arg_after(cmd, "--out");
      fs::create_directories(out);
      std::ofstream(out / "index.json") << "{}";
    } else if (cmd.find(" train ") != std::string::npos) {
      // A preempted or failed attempt still leaves the checkpoints it completed.
      fs::path run = arg_after(cmd, "--run-dir");
      int have = 0;
      if (fs::is_directory(run / "checkpoints")) {
        for (auto& e : fs::directory_iterator(run / "checkpoints")) (void)e, ++have;
      }
      int n = j.exit_code == 0 ? steps_per_train : 1;
      for (int k = 0; k < n; ++k) {
        fs::path ck = run / "checkpoints" / fmt::format("step-{:09d}", (have + k + 1) * 10);
        fs::create_directories(ck);
        std::ofstream(ck / "manifest.json") << "{}";
      }
    } else if (cmd.find(" eval ") != std::string::npos && j.exit_code == 0) {
      fs::path out = arg_after(cmd, "--out", cmd.find(" eval "));
      fs::create_directories(out.parent_path());
      double r = 0.1 * static_cast<double>(out.parent_path().filename().string().back() - '0');
      std::ofstream(out) << eval::to_json(
                                fake_report({{"xray", 8, r, 0.9, 0.4}, {"ct", 4, 0.25, 0.75, 0.3}}))
                                .dump();
    }
  }
};

}  // namespace m3ret::testing
