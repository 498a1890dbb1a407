#include "launcher/app_config.h"

#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/build_info.h"
#include "core/fs.h"
#include "core/utc.h"

namespace m3ret::launcher {

AppConfig load_app_config(const std::optional<std::filesystem::path>& file,
                          const std::vector<std::string>& overrides, bool use_embedded_demo) {
  config::Document doc;
  if (file) {
    doc.add_file(*file);
  } else if (use_embedded_demo) {
    doc.add_text(embedded_demo_config(), "configs/demo.toml (embedded)");
  }
  for (const auto& o : overrides) doc.add_override(o);
  AppConfig cfg;
  doc.bind("", cfg);
  doc.check_all_used();
  return cfg;
}

void DemoConfig::validate() const {
  for (const auto& v : variants)
    if (v != "pooling" && v != "student")
      throw config::Error(
          fmt::format("config key 'demo.variants': '{}' is not one of {{pooling, student}}", v));
}

std::string resolved_toml(AppConfig& cfg) { return config::to_toml(cfg); }

void write_run_record(const std::filesystem::path& run_dir, AppConfig& cfg,
                      const std::string& command_line, int world) {
  std::filesystem::create_directories(run_dir);
  std::string header = fmt::format(
      "# Resolved m3ret configuration (defaults -> config file -> --set overrides).\n"
      "# git revision: {}\n# command: {}\n\n",
      git_revision(), command_line);
  fs::write_atomic(run_dir / "config.toml", header + resolved_toml(cfg));
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  nlohmann::json j = {
      {"format", "m3ret-run"},   {"format_version", 1}, {"git_revision", git_revision()},
      {"command", command_line}, {"world_size", world}, {"host", host},
      {"started", utc_now()}};
  fs::write_atomic(run_dir / "run.json", j.dump(2) + "\n");
}

}  // namespace m3ret::launcher
