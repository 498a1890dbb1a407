#include <unistd.h>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/log.h"
#include "core/runtime.h"
#include "launcher/config_search.h"
#include "launcher/process.h"
#include "launcher/verbs.h"

namespace m3ret::launcher {

namespace {
std::string g_command_line;
}

void CommonOptions::add_to(CLI::App* verb) {
  verb->add_option("--config", config,
                   "TOML config file, or the name of a config shipped with m3ret (e.g. learning); "
                   "defaults are used for missing keys");
  verb->add_option("--set", sets, "override a config key: --set section.key=value (repeatable)")
      ->type_name("KEY=VALUE");
  verb->add_flag("-v,--verbose", verbose, "debug logging on the console");
}

AppConfig CommonOptions::load(bool use_embedded_demo) const {
  std::optional<std::filesystem::path> file;
  if (config) file = find_config(*config);
  return load_app_config(file, sets, use_embedded_demo);
}

const std::string& command_line() { return g_command_line; }

void set_command_line(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  g_command_line = shell_line(args);
}

int start_mpi(bool verbose, const std::optional<std::filesystem::path>& run_dir) {
  auto& rt = Runtime::init(nullptr, nullptr);
  log::init(rt.rank(), run_dir, verbose);
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  spdlog::debug("rank {}/{} (local {}/{}) on host {}, launcher {}", rt.rank(), rt.world(),
                rt.local_rank(), rt.local_world(), host, rt.launcher());
  return rt.rank();
}

void check_on_root(const std::function<void()>& check) {
  auto& rt = Runtime::get();
  std::string refused;
  if (rt.is_root()) {
    try {
      check();
    } catch (const std::exception& e) {
      refused = e.what();
    }
  }
  rt.world_comm().broadcast(refused, 0);
  if (!refused.empty()) throw Error(refused);
}

void add_config_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "config", "Print the resolved configuration (defaults -> file -> --set) as TOML");
  auto opts = std::make_shared<CommonOptions>();
  auto keys = std::make_shared<bool>(false);
  auto demo = std::make_shared<bool>(false);
  opts->add_to(verb);
  verb->add_flag("--keys", *keys, "list every key with its default and meaning instead");
  verb->add_flag("--demo", *demo, "start from the demo config compiled into the binary");
  verb->callback([opts, keys, demo] {
    AppConfig cfg = opts->load(*demo);
    if (*keys) {
      config::Lister lister;
      cfg.visit(lister);
      for (const auto& line : lister.lines()) std::printf("%s\n", line.c_str());
    } else {
      std::printf("%s", resolved_toml(cfg).c_str());
    }
  });
}

}  // namespace m3ret::launcher
