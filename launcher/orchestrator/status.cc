#include "launcher/orchestrator/status.h"

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "launcher/orchestrator/report.h"

namespace m3ret::orchestrator {
namespace {

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A run's mean recall@1: "0.3750", "0.3750 (mean over 2 of 3)" when some
// modality is absent, "absent" when every one is, "-" before any evaluation.
std::string mean_r1_cell(const nlohmann::json& run) {
  const auto& fin = run["final"];
  if (!fin.contains("mean")) return "-";
  if (fin["mean"].contains("absent")) return "absent";
  if (!fin["mean"].contains("recall@1")) return "-";
  std::string cell = fmt::format("{:.4f}", fin["mean"]["recall@1"].get<double>());
  const std::string note = run["mean_note"].get<std::string>();
  return note.empty() ? cell : cell + " (" + note + ")";
}

}  // namespace

nlohmann::json status_json(State& state) {
  nlohmann::json j;
  j["format"] = "m3ret-sweep-status";
  j["version"] = 1;
  j["sweep"] = state.meta("sweep_name").value_or("");
  j["backend"] = state.meta("backend").value_or("");
  j["work_dir"] = state.meta("work_dir").value_or("");
  auto evals = state.evaluations();
  j["runs"] = nlohmann::json::array();
  for (const auto& r : state.runs()) {
    nlohmann::json run = {{"name", r.name}, {"state", to_string(r.state)},
                          {"params", nlohmann::json::parse(r.params_json)},
                          {"data_fraction", r.data_fraction}, {"failures", r.failures},
                          {"run_dir", r.run_dir}};
    auto cks = state.checkpoints(r.name);
    run["checkpoints"] = cks.size();
    std::set<int64_t> evaluated;
    for (const auto& e : evals)
      if (e.run == r.name) evaluated.insert(e.step);
    const FinalEvaluation f = final_evaluation(evals, r.name);
    run["evaluated"] = evaluated.size();
    run["last_step"] = f.step;
    nlohmann::json fin = nlohmann::json::object();
    for (const auto& [modality, vals] : f.values) fin[modality] = vals;
    for (const auto& [modality, reason] : f.absent) fin[modality] = {{"absent", reason}};
    if (f.step >= 0 && !f.values.count("mean")) fin["mean"] = {{"absent", "no modality evaluated"}};
    run["final"] = fin;
    run["mean_note"] = f.mean_note();
    j["runs"].push_back(run);
  }
  j["jobs"] = nlohmann::json::array();
  for (const auto& job : state.jobs()) {
    j["jobs"].push_back({{"name", job.name}, {"run", job.run}, {"kind", to_string(job.kind)},
                         {"state", to_string(job.state)}, {"attempt", job.attempt},
                         {"step", job.step}, {"backend_id", job.backend_id},
                         {"exit_code", job.exit_code}, {"reason", job.reason},
                         {"log", job.job_dir + "/log"}});
  }
  j["events"] = nlohmann::json::array();
  for (const auto& e : state.events(0, 50)) {
    j["events"].push_back({{"id", e.id}, {"time", e.time}, {"run", e.run}, {"job", e.job},
                           {"message", e.message}});
  }
  return j;
}

std::string status_text(State& state) {
  auto j = status_json(state);
  std::string o = fmt::format("sweep {} ({} backend), {}\n\n", j["sweep"].get<std::string>(),
                              j["backend"].get<std::string>(), j["work_dir"].get<std::string>());
  o += fmt::format("{:<40} {:<10} {:>6} {:>9} {:>9} {:>10}\n", "RUN", "STATE", "FAILS", "CKPTS",
                   "EVALUATED", "MEAN R@1");
  for (const auto& r : j["runs"]) {
    o += fmt::format("{:<40} {:<10} {:>6} {:>9} {:>9} {:>10}\n", r["name"].get<std::string>(),
                     r["state"].get<std::string>(), r["failures"].get<int>(),
                     r["checkpoints"].get<size_t>(), r["evaluated"].get<size_t>(), mean_r1_cell(r));
  }
  o += fmt::format("\n{:<60} {:<6} {:<10} {:>10} {:>5}  {}\n", "JOB", "KIND", "STATE", "ID", "EXIT", "REASON");
  for (const auto& job : j["jobs"]) {
    o += fmt::format("{:<60} {:<6} {:<10} {:>10} {:>5}  {}\n", job["name"].get<std::string>(),
                     job["kind"].get<std::string>(), job["state"].get<std::string>(),
                     job["backend_id"].get<std::string>(), job["exit_code"].get<int>(),
                     job["reason"].get<std::string>());
  }
  auto table = scaling_table(state);
  if (!table.rows.empty()) o += "\n" + to_markdown(table);
  return o;
}

std::string status_html(State& state, const std::filesystem::path& report_dir) {
  auto j = status_json(state);
  std::string o = "<!doctype html><html><head><meta charset=\"utf-8\"><title>m3ret sweep " +
                  xml_escape(j["sweep"].get<std::string>()) +
                  "</title><meta http-equiv=\"refresh\" content=\"10\"><style>body{font-family:sans-serif}"
                  "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
                  "</head><body>\n";
  o += "<h1>Sweep " + xml_escape(j["sweep"].get<std::string>()) + " (" +
       xml_escape(j["backend"].get<std::string>()) + ")</h1>\n<h2>Runs</h2>\n<table><tr><th>run</th>"
       "<th>state</th><th>params</th><th>failures</th><th>checkpoints</th><th>evaluated</th>"
       "<th>mean recall@1</th></tr>\n";
  for (const auto& r : j["runs"]) {
    o += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                     xml_escape(r["name"]), xml_escape(r["state"]), xml_escape(r["params"].dump()),
                     r["failures"].get<int>(), r["checkpoints"].get<size_t>(), r["evaluated"].get<size_t>(),
                     xml_escape(mean_r1_cell(r)));
  }
  o += "</table>\n<h2>Scaling</h2>\n<table>";
  auto table = scaling_table(state);
  o += "<tr>";
  for (const auto& c : table.columns) o += "<th>" + xml_escape(c) + "</th>";
  o += "</tr>\n";
  for (const auto& row : table.rows) {
    o += "<tr>";
    for (const auto& v : row) o += "<td>" + xml_escape(v) + "</td>";
    o += "</tr>\n";
  }
  o += "</table>\n";
  for (const char* svg : {"recall_vs_model_size.svg", "recall_vs_data_fraction.svg", "recall_vs_step.svg"}) {
    o += "<div>" + read_text(report_dir / svg) + "</div>\n";
  }
  o += "<h2>Jobs</h2>\n<table><tr><th>job</th><th>kind</th><th>state</th><th>id</th><th>exit</th><th>reason</th></tr>\n";
  for (const auto& job : j["jobs"]) {
    o += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                     xml_escape(job["name"]), xml_escape(job["kind"]), xml_escape(job["state"]),
                     xml_escape(job["backend_id"]), job["exit_code"].get<int>(), xml_escape(job["reason"]));
  }
  o += "</table>\n<h2>Events</h2>\n<ul>\n";
  for (const auto& e : j["events"]) {
    o += "<li>" + xml_escape(e["job"].get<std::string>().empty() ? e["run"].get<std::string>() : e["job"].get<std::string>()) +
         ": " + xml_escape(e["message"]) + "</li>\n";
  }
  return o + "</ul></body></html>\n";
}

}  // namespace m3ret::orchestrator
