#include <cstdio>

#include "launcher/orchestrator/status.h"
#include "launcher/verbs.h"

namespace m3ret::launcher {

void add_status_verb(CLI::App& app) {
  auto* verb =
      app.add_subcommand("status", "Print the state of a sweep run by `m3ret orchestrate`");
  auto state_path = std::make_shared<std::string>("state.db");
  auto json = std::make_shared<bool>(false);
  verb->add_option("--state", *state_path, "state database (WORK_DIR/state.db of the sweep)")
      ->capture_default_str();
  verb->add_flag("--json", *json, "print the JSON of the HTTP /api/status endpoint instead");
  verb->callback([state_path, json] {
    orchestrator::State state(*state_path, /*read_only=*/true);
    if (*json) {
      std::printf("%s\n", orchestrator::status_json(state).dump(2).c_str());
    } else {
      std::printf("%s", orchestrator::status_text(state).c_str());
    }
  });
}

}  // namespace m3ret::launcher
