// The status of a sweep from its state database, as JSON (HTTP /api/status),
// console text (`m3ret status`) and an HTML page (HTTP /, and REPORT_DIR/status.html).
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
// The page: the runs (one column per sweep parameter, a link to each run's
// last evaluation report), the charts of `report_dir` inline (or why they were
// skipped), the scaling table, jobs and events; it reloads every 10 s.
// kServer: links as served by the status server (report/..., evals/...);
// kStatic: relative to the report folder, for REPORT_DIR/status.html.
enum class StatusLinks { kServer, kStatic };
std::string status_html(State& state, const std::filesystem::path& report_dir,
                        StatusLinks links = StatusLinks::kServer);
// Writes REPORT_DIR/status.html (atomically), the page that stays after the
// orchestrator exits.
void write_status_page(State& state, const std::filesystem::path& report_dir);

}  // namespace m3ret::orchestrator
