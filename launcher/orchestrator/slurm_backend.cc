// Slurm backend: sbatch scripts made from the templates in slurm/ (their
// #SBATCH header is kept; the part between the @M3RET_BODY@ markers is
// replaced by the job's command), submitted with `sbatch --parsable`,
// followed with squeue/scontrol, cancelled with scancel.
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "launcher/orchestrator/backend.h"
#include "launcher/orchestrator/sweep.h"
#include "launcher/process.h"

namespace m3ret::orchestrator {
namespace fs = std::filesystem;
using launcher::run_capture;
namespace {

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

const char* template_name(JobKind kind) {
  switch (kind) {
    case JobKind::kTrain:
      return "pretrain.sbatch";
    case JobKind::kEval:
      return "eval.sbatch";
    default:
      return "shard.sbatch";
  }
}

class SlurmBackend : public Backend {
 public:
  explicit SlurmBackend(SlurmOptions o) : o_(std::move(o)) {}
  std::string name() const override { return "slurm"; }
  int max_parallel() const override { return o_.max_parallel; }
  bool supports_dependencies() const override { return true; }
  // A train job's ranks are the allocation's (nodes x ntasks-per-node):
  // mpirun takes them from Slurm.
  std::string mpi_launch_prefix(JobKind kind, int ranks,
                                const std::string& mpiexec) const override {
    if (kind != JobKind::kTrain) return Backend::mpi_launch_prefix(kind, ranks, mpiexec);
    const auto words = split_command(mpiexec, "mpiexec");
    const bool bound = std::find(words.begin(), words.end(), "--bind-to") != words.end();
    return launcher::shell_line(words) + (bound ? "" : " --bind-to none") +
           (geteuid() == 0 ? " --allow-run-as-root" : "");
  }

  std::string submit(const JobRequest& job) override {
    fs::create_directories(job.job_dir);
    fs::path script = job.job_dir / "job.sbatch";
    {
      std::ofstream out(script);
      out << render(job);
      if (!out) throw Error(fmt::format("cannot write '{}'", script.string()));
    }
    std::vector<std::string> argv = {"sbatch", "--parsable", "--job-name=" + job.name,
                                     "--output=" + (job.job_dir / "slurm-%j.out").string(),
                                     "--chdir=" + fs::current_path().string()};
    if (!o_.partition.empty()) argv.push_back("--partition=" + o_.partition);
    if (!o_.account.empty()) argv.push_back("--account=" + o_.account);
    if (job.kind == JobKind::kTrain) {
      argv.push_back(fmt::format("--nodes={}", o_.nodes));
      argv.push_back(fmt::format("--ntasks-per-node={}", o_.ntasks_per_node));
      argv.push_back("--time=" + o_.time);
      if (o_.gpus_per_node > 0) argv.push_back(fmt::format("--gpus-per-node={}", o_.gpus_per_node));
    } else {
      argv.push_back("--nodes=1");
      argv.push_back(fmt::format("--ntasks={}", job.ranks));
      argv.push_back("--time=" + o_.eval_time);
      if (job.kind == JobKind::kEval && o_.gpus_per_node > 0) argv.push_back("--gpus-per-node=1");
    }
    argv.push_back(fmt::format("--cpus-per-task={}", o_.cpus_per_task));
    if (!job.after_ok.empty()) {
      std::string dep = "--dependency=afterok";
      for (const auto& id : job.after_ok) dep += ":" + id;
      argv.push_back(dep);
      argv.push_back("--kill-on-invalid-dep=yes");
    }
    argv.insert(argv.end(), o_.extra_args.begin(), o_.extra_args.end());
    argv.push_back(script.string());
    auto r = run_capture(argv);
    std::string id = trim(r.out);
    if (auto semi = id.find(';'); semi != std::string::npos)
      id = id.substr(0, semi);  // "id;cluster"
    if (r.status != 0 || id.empty() || id.find_first_not_of("0123456789") != std::string::npos) {
      throw Error(
          fmt::format("sbatch refused job '{}' (exit {}): {}", job.name, r.status, trim(r.err)));
    }
    return id;
  }

  Observed poll(const std::string& id, const fs::path& job_dir) override {
    auto q = run_capture({"squeue", "-h", "-j", id, "-o", "%T %r"});
    std::string line = trim(q.out.substr(0, q.out.find('\n')));
    std::string st = line.substr(0, line.find(' '));
    std::string why =
        line.find(' ') == std::string::npos ? "" : trim(line.substr(line.find(' ') + 1));
    if (q.status == 0 && !st.empty()) {
      if (st == "PENDING" && why == "DependencyNeverSatisfied") {
        // An after_ok job failed. --kill-on-invalid-dep=yes makes Slurm cancel
        // such a job itself, but a site may refuse it: cancel it here.
        run_capture({"scancel", id});
        return {JobState::kCancelled, -1, fmt::format("{} ({})", kDependencyFailed, why)};
      }
      if (st == "RUNNING" || st == "SUSPENDED" || st == "STOPPED")
        return {JobState::kRunning, -1, st};
      if (st == "PENDING" || st == "CONFIGURING" || st == "REQUEUED" || st == "REQUEUE_HOLD" ||
          st == "REQUEUE_FED" || st == "RESIZING") {
        return {JobState::kSubmitted, -1, st};
      }
      if (st != "COMPLETING" && st != "COMPLETED") return terminal_from(st, why, job_dir);
    }
    // A COMPLETING job is not over: after `scontrol requeue` or a requeue on
    // preemption it goes back to PENDING, and the exit code the wrapper left
    // belongs to the attempt Slurm is about to run again.
    if (st == "COMPLETING") return {JobState::kRunning, -1, st};
    if (auto rc = read_exit_code(job_dir)) {
      return {*rc == 0 ? JobState::kSucceeded : JobState::kFailed, *rc,
              fmt::format("exit code {}", *rc)};
    }
    auto c = run_capture({"scontrol", "show", "job", id, "-o"});
    if (c.status == 0 && c.out.find("JobState=") != std::string::npos) {
      return terminal_from(field(c.out, "JobState"), field(c.out, "Reason"), job_dir);
    }
    if (q.status != 0 && q.err.find("Invalid job id") == std::string::npos) {
      // squeue itself failed (controller down): report no change.
      return {JobState::kSubmitted, -1, "squeue failed: " + trim(q.err)};
    }
    return {JobState::kFailed, -1, "lost: unknown to Slurm and no exit code"};
  }

  std::optional<std::string> find(const std::string& name, const fs::path& job_dir) override {
    auto q = run_capture({"squeue", "-h", "-n", name, "-o", "%i"});
    std::string id = trim(q.out);
    if (q.status == 0 && !id.empty()) return id.substr(0, id.find('\n'));
    std::ifstream in(job_dir / "backend_id");
    std::string w;
    if (in >> w) return w;
    return std::nullopt;
  }

  void cancel(const std::string& id) override { run_capture({"scancel", id}); }

 private:
  // The value of KEY=VALUE in `scontrol show job -o` output ("" when absent).
  static std::string field(const std::string& out, const std::string& key) {
    size_t b = key.size() + 1;
    if (out.rfind(key + "=", 0) != 0) {
      auto p = out.find(" " + key + "=");
      if (p == std::string::npos) return "";
      b += p + 1;
    }
    return out.substr(b, out.find_first_of(" \n", b) - b);
  }

  Observed terminal_from(const std::string& st, const std::string& why, const fs::path& job_dir) {
    if (st == "PENDING" || st == "REQUEUED" || st == "CONFIGURING")
      return {JobState::kSubmitted, -1, st};
    if (st == "RUNNING" || st == "COMPLETING") return {JobState::kRunning, -1, st};
    auto rc = read_exit_code(job_dir);
    if (st == "COMPLETED") return {JobState::kSucceeded, rc.value_or(0), st};
    if (st == "CANCELLED" && why == "DependencyNeverSatisfied") {
      // --kill-on-invalid-dep=yes: Slurm cancelled it because an after_ok job failed.
      return {JobState::kCancelled, rc.value_or(-1),
              fmt::format("{} ({})", kDependencyFailed, why)};
    }
    if (st == "CANCELLED") return {JobState::kCancelled, rc.value_or(-1), st};
    if (st == "PREEMPTED") return {JobState::kPreempted, rc.value_or(-1), st};
    return {JobState::kFailed, rc.value_or(-1),
            st};  // FAILED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY...
  }

  // The template's header (everything outside the body markers) + the job's body.
  std::string render(const JobRequest& job) const {
    fs::path tpl = o_.templates / template_name(job.kind);
    std::ifstream in(tpl);
    if (!in) throw Error(fmt::format("cannot read Slurm template '{}'", tpl.string()));
    std::ostringstream out;
    std::string line;
    bool in_body = false, found = false;
    while (std::getline(in, line)) {
      if (line.find("@M3RET_BODY_BEGIN@") != std::string::npos) {
        in_body = found = true;
        out << "# body generated by m3ret orchestrate for job " << job.name << "\n";
        // MPIEXEC: the command line, quoted (sh -c "$MPIEXEC ..." or eval keeps quoted options whole).
        out << "export MPIEXEC="
            << launcher::shell_line(
                   {launcher::shell_line(split_command(o_.mpiexec, "slurm.mpiexec"))})
            << "\n";
        out << job_wrapper_script(job.command, job.job_dir, "$SLURM_JOB_ID",
                                  job.kind == JobKind::kTrain);
        continue;
      }
      if (line.find("@M3RET_BODY_END@") != std::string::npos) {
        in_body = false;
        continue;
      }
      if (!in_body) out << line << "\n";
    }
    if (!found)
      throw Error(
          fmt::format("Slurm template '{}' has no @M3RET_BODY_BEGIN@ marker", tpl.string()));
    return out.str();
  }
  SlurmOptions o_;
};

}  // namespace

std::unique_ptr<Backend> make_slurm_backend(const SlurmOptions& opts) {
  return std::make_unique<SlurmBackend>(opts);
}

}  // namespace m3ret::orchestrator
