#include <atomic>
#include <csignal>

#include "core/log.h"
#include "launcher/orchestrator/session.h"
#include "launcher/verbs.h"

namespace m3ret::launcher {
namespace {

std::atomic<bool> g_stop{false};
extern "C" void m3ret_orchestrate_on_stop_signal(int) { g_stop.store(true); }

}  // namespace

void add_orchestrate_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "orchestrate",
      "Run a sweep (configs/sweeps/*.toml): shard, train, evaluate every checkpoint, "
      "write the scaling report; restartable at any moment (state in SQLite)");
  struct Args {
    std::string sweep, backend = "local", state, token, job_binary;
    int port = 0;
    double poll = 2.0;
    bool no_server = false, verbose = false, retry_failed = false;
  };
  auto a = std::make_shared<Args>();
  verb->add_option("--sweep", a->sweep, "sweep file")->required()->check(CLI::ExistingFile);
  verb->add_option("--backend", a->backend, "where jobs run")
      ->check(CLI::IsMember({"local", "slurm"}));
  verb->add_option("--state", a->state, "state database (default WORK_DIR/state.db)");
  verb->add_option("--port", a->port, "status server port on 127.0.0.1 (0 = any free port)")
      ->check(CLI::Range(0, 65535));
  verb->add_option("--token", a->token,
                   "token for cancel/retry (default: random, in WORK_DIR/token)");
  verb->add_option("--poll", a->poll, "seconds between polls of the backend")
      ->check(CLI::Range(0.05, 3600.0));
  verb->add_option(
      "--job-binary", a->job_binary,
      "the m3ret that jobs run (default: this binary; e.g. a path valid on the compute "
      "nodes, or a wrapper script)");
  verb->add_flag("--no-server", a->no_server, "do not start the status server");
  verb->add_flag("--retry-failed", a->retry_failed,
                 "make every failed run pending again before starting (each gets its whole retry "
                 "budget back)");
  verb->add_flag("-v,--verbose", a->verbose, "debug logging on the console");
  verb->callback([a] {
    log::init(0, std::nullopt, a->verbose);
    orchestrator::SessionOptions o;
    o.sweep = a->sweep;
    o.backend = a->backend;
    o.state = a->state;
    o.job_binary = a->job_binary;
    o.token = a->token;
    o.port = a->port;
    o.poll = a->poll;
    o.server = !a->no_server;
    o.retry_failed = a->retry_failed;
    o.validate = [](const std::filesystem::path& base, const std::vector<std::string>& sets) {
      load_app_config(base, sets);  // every run's overrides against the real config schema
    };
    std::signal(SIGINT, m3ret_orchestrate_on_stop_signal);
    std::signal(SIGTERM, m3ret_orchestrate_on_stop_signal);
    orchestrator::run_session(o, g_stop);
  });
}

}  // namespace m3ret::launcher
