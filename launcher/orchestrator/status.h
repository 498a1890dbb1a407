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
//            "evaluated", "last_step", "final": {modality: {metric: value}},
//            "mean_note"}],
//   an absent modality's "final" entry is {"absent": "<reason>"}, and so is
//   "mean"'s when every modality is absent; "mean_note" says what the mean
//   covers ("mean over 2 of 3", "absent", "" = every modality).
//  "jobs": [{"name", "run", "kind", "state", "attempt", "step", "backend_id",
//            "exit_code", "reason", "log"}],
//  "events": [{"id", "time", "run", "job", "message"}] (the last 50)}
nlohmann::json status_json(State& state);
std::string status_text(State& state);
// `report_dir` holds the SVGs that are inlined.
std::string status_html(State& state, const std::filesystem::path& report_dir);

}  // namespace m3ret::orchestrator
