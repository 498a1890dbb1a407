#include "launcher/orchestrator/session.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "launcher/orchestrator/http_server.h"
#include "launcher/orchestrator/orchestrator.h"
#include "launcher/orchestrator/status.h"
#include "launcher/process.h"

namespace m3ret::orchestrator {
namespace fs = std::filesystem;

StateLock::StateLock(const fs::path& db) {
  fs::path f = db;
  f += ".lock";
  fd_ = ::open(f.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);  // jobs do not inherit it
  if (fd_ < 0) throw Error(fmt::format("cannot open '{}': {}", f.string(), std::strerror(errno)));
  if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    std::string holder;
    std::ifstream(f) >> holder;
    ::close(fd_);
    throw Error(
        fmt::format("another m3ret orchestrate (pid {}) is running on '{}' (lock '{}'); "
                    "stop it first, or use m3ret status to watch it",
                    holder.empty() ? "?" : holder, db.string(), f.string()));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
    spdlog::warn("orchestrate: cannot write the pid to '{}'", f.string());
  }
}

StateLock::~StateLock() { ::close(fd_); }

void check_ownership(State& state, const fs::path& db, const Sweep& sweep,
                     const std::string& backend) {
  if (auto prev = state.meta("sweep_file"); prev && *prev != sweep.file.string()) {
    throw Error(fmt::format("state '{}' belongs to sweep '{}', not '{}'", db.string(), *prev,
                            sweep.file.string()));
  }
  if (auto prev = state.meta("backend"); prev && *prev != backend) {
    throw Error(fmt::format("state '{}' was run with --backend {}; a sweep cannot change backend",
                            db.string(), *prev));
  }
}

void write_token_file(const fs::path& work_dir, const std::string& token) {
  const auto file = work_dir / "token";
  std::ofstream(file) << token << "\n";
  ::chmod(file.c_str(), 0600);
}

void write_port_file(const fs::path& work_dir, int port) {
  std::ofstream(work_dir / "port") << port << "\n";
}

namespace {

OrchestratorOptions orchestrator_options(const SessionOptions& o, const Sweep& sweep) {
  OrchestratorOptions opts;
  opts.m3ret = o.job_binary.empty() ? launcher::self_path() : fs::absolute(o.job_binary);
  if (!o.job_binary.empty() && ::access(opts.m3ret.c_str(), X_OK) != 0) {
    throw Error(fmt::format("--job-binary '{}' is not an executable file", o.job_binary.string()));
  }
  opts.mpiexec = o.backend == "slurm" ? sweep.slurm.mpiexec : sweep.local.mpiexec;
  opts.model_info = launcher::self_path();
  return opts;
}

void retry_failed_runs(State& state, Orchestrator& orch) {
  for (const auto& r : state.runs()) {
    if (r.state != RunState::kFailed) continue;
    orch.retry_run(r.name);
    spdlog::info("orchestrate: retrying failed run {}", r.name);
  }
}

std::unique_ptr<HttpServer> start_server(const SessionOptions& o, const Sweep& sweep, State& state,
                                         Orchestrator& orch) {
  const std::string token = o.token.empty() ? random_token() : o.token;
  write_token_file(sweep.work_dir, token);
  auto server = std::make_unique<HttpServer>(
      static_cast<uint16_t>(o.port),
      make_status_handler(state, &orch, token, orch.report_dir().string()));
  write_port_file(sweep.work_dir, server->port());
  spdlog::info("orchestrate: status on http://127.0.0.1:{}/ (token for cancel/retry in {})",
               server->port(), (sweep.work_dir / "token").string());
  return server;
}

// Throws naming every run that did not succeed.
void check_all_succeeded(State& state, const Sweep& sweep, const fs::path& db) {
  std::vector<std::string> bad;
  for (const auto& r : state.runs()) {
    if (r.state != RunState::kSucceeded) bad.push_back(r.name + " " + to_string(r.state));
  }
  if (!bad.empty()) {
    throw Error(
        fmt::format("{} of {} runs did not succeed: {} (see m3ret status --state {}; "
                    "--retry-failed runs the failed ones again)",
                    bad.size(), sweep.runs.size(), fmt::join(bad, ", "), db.string()));
  }
}

}  // namespace

void run_session(const SessionOptions& o, const std::atomic<bool>& stop) {
  const Sweep sweep = load_sweep(o.sweep, o.validate);  // every run's overrides checked first
  fs::create_directories(sweep.work_dir);
  const fs::path db = o.state.empty() ? sweep.work_dir / "state.db" : o.state;
  if (db.has_parent_path()) fs::create_directories(db.parent_path());
  StateLock lock(db);
  State state(db);
  check_ownership(state, db, sweep, o.backend);
  std::unique_ptr<Backend> backend = o.backend == "slurm"
                                         ? make_slurm_backend(sweep.slurm)
                                         : make_local_backend(sweep.local.max_parallel);
  Orchestrator orch(sweep, state, *backend, orchestrator_options(o, sweep));
  orch.reconcile();
  if (o.retry_failed) retry_failed_runs(state, orch);
  std::unique_ptr<HttpServer> server;
  if (o.server) server = start_server(o, sweep, state, orch);
  spdlog::info("orchestrate: sweep {} ({} runs, {} backend), state {}", sweep.name,
               sweep.runs.size(), backend->name(), db.string());
  orch.run(o.poll, stop);
  server.reset();  // from here on, this thread alone uses the state
  try {
    write_status_page(state, orch.report_dir());  // the page that stays after the orchestrator
  } catch (const std::exception& e) {
    spdlog::warn("orchestrate: status page not written: {}", e.what());
  }
  if (stop.load()) {
    spdlog::info("orchestrate: stopped; jobs keep running, start again to continue");
    return;
  }
  spdlog::info("orchestrate: report in {}", orch.report_dir().string());
  check_all_succeeded(state, sweep, db);
}

}  // namespace m3ret::orchestrator
