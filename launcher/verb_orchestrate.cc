#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <csignal>
#include <fstream>
#include <mutex>

#include <spdlog/spdlog.h>

#include "core/log.h"
#include "launcher/orchestrator/http_server.h"
#include "launcher/orchestrator/orchestrator.h"
#include "launcher/process.h"
#include "launcher/verbs.h"

namespace m3ret::launcher {
namespace {

std::atomic<bool> g_stop{false};
extern "C" void m3ret_orchestrate_on_stop_signal(int) { g_stop.store(true); }

// One orchestrator per state database: an flock on STATE.lock, held for the
// life of the process and released by the kernel however it ends (kill -9
// included), so a restart right after a crash proceeds and a second
// orchestrator on the same sweep is refused instead of submitting twice.
int lock_state(const std::filesystem::path& db) {
  std::filesystem::path f = db;
  f += ".lock";
  int fd = ::open(f.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(fmt::format("cannot open '{}': {}", f.string(), std::strerror(errno)));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    std::string holder;
    std::ifstream(f) >> holder;
    ::close(fd);
    throw Error(fmt::format("another m3ret orchestrate (pid {}) is running on '{}' (lock '{}'); "
                            "stop it first, or use m3ret status to watch it",
                            holder.empty() ? "?" : holder, db.string(), f.string()));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    spdlog::warn("orchestrate: cannot write the pid to '{}'", f.string());
  }
  return fd;  // kept open (close-on-exec, so jobs do not inherit it)
}

}  // namespace

void add_orchestrate_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "orchestrate", "Run a sweep (configs/sweeps/*.toml): shard, train, evaluate every checkpoint, "
                     "write the scaling report; restartable at any moment (state in SQLite)");
  struct Args {
    std::string sweep, backend = "local", state, token, job_binary;
    int port = 0;
    double poll = 2.0;
    bool no_server = false, verbose = false, retry_failed = false;
  };
  auto a = std::make_shared<Args>();
  verb->add_option("--sweep", a->sweep, "sweep file")->required()->check(CLI::ExistingFile);
  verb->add_option("--backend", a->backend, "where jobs run")->check(CLI::IsMember({"local", "slurm"}));
  verb->add_option("--state", a->state, "state database (default WORK_DIR/state.db)");
  verb->add_option("--port", a->port, "status server port on 127.0.0.1 (0 = any free port)")
      ->check(CLI::Range(0, 65535));
  verb->add_option("--token", a->token, "token for cancel/retry (default: random, in WORK_DIR/token)");
  verb->add_option("--poll", a->poll, "seconds between polls of the backend")->check(CLI::Range(0.05, 3600.0));
  verb->add_option("--job-binary", a->job_binary,
                   "the m3ret that jobs run (default: this binary; e.g. a path valid on the compute "
                   "nodes, or a wrapper script)");
  verb->add_flag("--no-server", a->no_server, "do not start the status server");
  verb->add_flag("--retry-failed", a->retry_failed,
                 "make every failed run pending again before starting (each gets its whole retry budget back)");
  verb->add_flag("-v,--verbose", a->verbose, "debug logging on the console");
  verb->callback([a] {
    log::init(0, std::nullopt, a->verbose);
    // Every run's overrides are checked against the real config schema before anything starts.
    auto sweep = orchestrator::load_sweep(a->sweep, [](const std::filesystem::path& base,
                                                       const std::vector<std::string>& sets) {
      load_app_config(base, sets);
    });
    std::filesystem::create_directories(sweep.work_dir);
    std::filesystem::path db = a->state.empty() ? sweep.work_dir / "state.db" : std::filesystem::path(a->state);
    if (db.has_parent_path()) std::filesystem::create_directories(db.parent_path());
    int lock_fd = lock_state(db);
    struct LockCloser {
      int fd;
      ~LockCloser() { ::close(fd); }
    } lock_closer{lock_fd};
    orchestrator::State state(db);
    if (auto prev = state.meta("sweep_file"); prev && *prev != sweep.file.string()) {
      throw Error(fmt::format("state '{}' belongs to sweep '{}', not '{}'", db.string(), *prev, sweep.file.string()));
    }
    if (auto prev = state.meta("backend"); prev && *prev != a->backend) {
      throw Error(fmt::format("state '{}' was run with --backend {}; a sweep cannot change backend",
                              db.string(), *prev));
    }
    std::unique_ptr<orchestrator::Backend> backend =
        a->backend == "slurm" ? orchestrator::make_slurm_backend(sweep.slurm)
                              : orchestrator::make_local_backend(sweep.local.max_parallel);
    orchestrator::OrchestratorOptions opts;
    opts.m3ret = a->job_binary.empty() ? self_path() : std::filesystem::absolute(a->job_binary);
    if (!a->job_binary.empty() && ::access(opts.m3ret.c_str(), X_OK) != 0) {
      throw Error(fmt::format("--job-binary '{}' is not an executable file", a->job_binary));
    }
    opts.mpiexec = a->backend == "slurm" ? sweep.slurm.mpiexec : sweep.local.mpiexec;
    orchestrator::Orchestrator orch(sweep, state, *backend, opts);
    orch.reconcile();
    if (a->retry_failed) {
      for (const auto& r : state.runs()) {
        if (r.state != orchestrator::RunState::kFailed) continue;
        orch.retry_run(r.name);
        spdlog::info("orchestrate: retrying failed run {}", r.name);
      }
    }

    std::mutex mutex;
    std::unique_ptr<orchestrator::HttpServer> server;
    if (!a->no_server) {
      std::string token = a->token.empty() ? orchestrator::random_token() : a->token;
      auto token_file = sweep.work_dir / "token";
      {
        std::ofstream(token_file) << token << "\n";
      }
      ::chmod(token_file.c_str(), 0600);
      server = std::make_unique<orchestrator::HttpServer>(
          static_cast<uint16_t>(a->port),
          orchestrator::make_status_handler(state, &orch, token, orch.report_dir().string()), mutex);
      std::ofstream(sweep.work_dir / "port") << server->port() << "\n";
      spdlog::info("orchestrate: status on http://127.0.0.1:{}/ (token for cancel/retry in {})",
                   server->port(), token_file.string());
    }
    std::signal(SIGINT, m3ret_orchestrate_on_stop_signal);
    std::signal(SIGTERM, m3ret_orchestrate_on_stop_signal);
    spdlog::info("orchestrate: sweep {} ({} runs, {} backend), state {}", sweep.name, sweep.runs.size(),
                 backend->name(), db.string());
    orch.run(a->poll, g_stop, &mutex);
    std::lock_guard<std::mutex> lock(mutex);
    if (g_stop.load()) {
      spdlog::info("orchestrate: stopped; jobs keep running, start again to continue");
      return;
    }
    std::vector<std::string> bad;
    for (const auto& r : state.runs()) {
      if (r.state != orchestrator::RunState::kSucceeded) bad.push_back(r.name + " " + to_string(r.state));
    }
    spdlog::info("orchestrate: report in {}", orch.report_dir().string());
    if (!bad.empty()) {
      throw Error(fmt::format("{} of {} runs did not succeed: {} (see m3ret status --state {}; "
                              "--retry-failed runs the failed ones again)",
                              bad.size(), sweep.runs.size(), fmt::join(bad, ", "), db.string()));
    }
  });
}

}  // namespace m3ret::launcher
