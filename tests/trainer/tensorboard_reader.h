// Reading TensorBoard event files with TensorBoard's own reader (Python).
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace m3ret::trainer {

namespace stdfs = std::filesystem;

// A Python with TensorBoard's event reader: Debian's, else the venv that setup.sh
// makes for it (the wheel's numpy must not shadow Debian's).
inline std::string tensorboard_python() {
  auto py = testing::python_with("tensorboard.backend.event_processing.event_accumulator");
  const stdfs::path venv = "/opt/m3ret/tensorboard-venv/bin/python";
  if (py.empty() && stdfs::exists(venv) &&
      testing::run_command(venv.string() +
                           " -c 'import tensorboard.backend.event_processing.event_accumulator'") ==
          0)
    py = venv.string();
  return py;
}

// {tag: [[step, value], ...]} as TensorBoard's EventAccumulator reads `dir`;
// empty (with the reason in *why) when no Python with TensorBoard is present.
inline nlohmann::json read_with_tensorboard(const stdfs::path& dir, std::string* why) {
  const auto py = tensorboard_python();
  if (py.empty()) {
    *why =
        "no Python with the tensorboard package (Debian 12 packages no python3-tensorboard; "
        "bash setup.sh installs the wheel in /opt/m3ret/tensorboard-venv)";
    return nullptr;
  }
  const auto script = dir.parent_path() / "read_events.py";
  std::ofstream(script)
      << "import json, sys\n"
         "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n"
         "ea = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0})\n"
         "ea.Reload()\n"
         "print(json.dumps({t: [[e.step, e.value] for e in ea.Scalars(t)]\n"
         "                  for t in ea.Tags()['scalars']}))\n";
  std::string out;
  const int rc =
      testing::run_command(py + " " + script.string() + " " + dir.string() + " 2>/dev/null", &out);
  if (rc != 0) {
    *why = "the TensorBoard reader failed: " + out;
    return nlohmann::json::object({{"error", out}});
  }
  return nlohmann::json::parse(out);
}

}  // namespace m3ret::trainer
