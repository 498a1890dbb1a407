// The status of a sweep from its state database, as JSON (HTTP /api/status),
// console text (`m3ret status`) and an HTML page (HTTP /).
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "launcher/orchestrator/state.h"

namespace m3ret::orchestrator {

// {"format": "m3ret-sweep-status", "version": 1, "sweep", "backend", "work_dir",
//  "runs": [{"name", "state", "params", "data_fraction", "failures", "checkpoints",
//            "evaluated", "last_step", "final": {modality: {metric: value}}}],
//  "jobs": [{"name", "run", "kind", "state", "attempt", "step", "backend_id",
//            "exit_code", "reason", "log"}],
//  "events": [{"id", "time", "run", "job", "message"}] (the last 50)}
nlohmann::json status_json(State& state);
std::string status_text(State& state);
// `report_dir` holds the SVGs that are inlined.
std::string status_html(State& state, const std::filesystem::path& report_dir);

}  // namespace m3ret::orchestrator
