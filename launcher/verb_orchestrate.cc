#include <sys/stat.h>

#include <atomic>
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

}  // namespace

void add_orchestrate_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "orchestrate", "Run a sweep (configs/sweeps/*.toml): shard, train, evaluate every checkpoint, "
                     "write the scaling report; restartable at any moment (state in SQLite)");
  struct Args {
    std::string sweep, backend = "local", state, token;
    int port = 0;
    double poll = 2.0;
    bool no_server = false, verbose = false;
  };
  auto a = std::make_shared<Args>();
  verb->add_option("--sweep", a->sweep, "sweep file")->required()->check(CLI::ExistingFile);
  verb->add_option("--backend", a->backend, "where jobs run")->check(CLI::IsMember({"local", "slurm"}));
  verb->add_option("--state", a->state, "state database (default WORK_DIR/state.db)");
  verb->add_option("--port", a->port, "status server port on 127.0.0.1 (0 = any free port)");
  verb->add_option("--token", a->token, "token for cancel/retry (default: random, in WORK_DIR/token)");
  verb->add_option("--poll", a->poll, "seconds between polls of the backend")->check(CLI::Range(0.05, 3600.0));
  verb->add_flag("--no-server", a->no_server, "do not start the status server");
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
    opts.m3ret = self_path();
    opts.mpiexec = a->backend == "slurm" ? sweep.slurm.mpiexec : sweep.local.mpiexec;
    orchestrator::Orchestrator orch(sweep, state, *backend, opts);
    orch.reconcile();

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
      if (r.state != "succeeded") bad.push_back(r.name + " " + r.state);
    }
    spdlog::info("orchestrate: report in {}", orch.report_dir().string());
    if (!bad.empty()) {
      throw Error(fmt::format("{} of {} runs did not succeed: {} (see m3ret status --state {})", bad.size(),
                              sweep.runs.size(), fmt::join(bad, ", "), db.string()));
    }
  });
}

}  // namespace m3ret::launcher
