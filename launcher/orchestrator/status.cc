#include "launcher/orchestrator/status.h"

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <cctype>

#include <fmt/format.h>

#include "core/fs.h"
#include "core/utc.h"
#include "launcher/orchestrator/report.h"

namespace m3ret::orchestrator {
namespace {

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
    nlohmann::json run = {{"name", r.name},
                          {"state", to_string(r.state)},
                          {"params", nlohmann::json::parse(r.params_json)},
                          {"data_fraction", r.data_fraction},
                          {"failures", r.failures},
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
    j["jobs"].push_back({{"name", job.name},
                         {"run", job.run},
                         {"kind", to_string(job.kind)},
                         {"state", to_string(job.state)},
                         {"attempt", job.attempt},
                         {"step", job.step},
                         {"backend_id", job.backend_id},
                         {"exit_code", job.exit_code},
                         {"reason", job.reason},
                         {"log", job.job_dir + "/log"}});
  }
  j["events"] = nlohmann::json::array();
  for (const auto& e : state.events(0, 50)) {
    j["events"].push_back(
        {{"id", e.id}, {"time", e.time}, {"run", e.run}, {"job", e.job}, {"message", e.message}});
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
  o += fmt::format("\n{:<60} {:<6} {:<10} {:>10} {:>5}  {}\n", "JOB", "KIND", "STATE", "ID", "EXIT",
                   "REASON");
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

namespace {

// Percent-encodes a path segment for a link (RFC 3986 unreserved characters stay).
std::string url_segment(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '=')
      o += static_cast<char>(c);
    else
      o += fmt::format("%{:02X}", c);
  }
  return o;
}

const char* kStyle =
    "body{font-family:system-ui,-apple-system,'Segoe "
    "UI',Roboto,sans-serif;margin:24px;color:#1d2430;"
    "background:#f6f7f9}h1{font-size:1.5em;margin:0 0 4px}h2{font-size:1.15em;margin:28px 0 8px}"
    ".meta{color:#5b6472;margin-bottom:12px}table{border-collapse:collapse;background:#fff;"
    "box-shadow:0 1px 3px rgba(0,0,0,.12);margin-bottom:8px;font-size:.9em}th,td{padding:5px 10px;"
    "border-bottom:1px solid #e3e6ea;text-align:left;white-space:nowrap}th{background:#eef1f5;"
    "position:sticky;top:0}tr:nth-child(even) td{background:#fafbfc}td.num{text-align:right;"
    "font-variant-numeric:tabular-nums}.state{padding:1px 8px;border-radius:10px;font-size:.85em}"
    ".succeeded{background:#d9f2df;color:#1e6b34}.failed,.lost{background:#fadcdc;color:#8f1d1d}"
    ".running,.submitted{background:#dce8fa;color:#1d4d8f}.pending,.intent{background:#eee;color:#"
    "555}"
    ".cancelled,.preempted{background:#fbeed5;color:#7a5410}.plots{display:flex;flex-wrap:wrap;gap:"
    "12px}"
    ".plots img{background:#fff;box-shadow:0 1px 3px rgba(0,0,0,.12);max-width:100%}"
    ".note{color:#8f1d1d}details{margin-top:8px}summary{cursor:pointer;font-weight:600}";

std::string state_badge(const std::string& s) {
  return "<span class=\"state " + xml_escape(s) + "\">" + xml_escape(s) + "</span>";
}

std::string cell(const std::string& text, bool num = false) {
  return std::string(num ? "<td class=\"num\">" : "<td>") + xml_escape(text) + "</td>";
}

std::string head_row(const std::vector<std::string>& names) {
  std::string o = "<tr>";
  for (const auto& n : names) o += "<th>" + xml_escape(n) + "</th>";
  return o + "</tr>\n";
}

// The runs table: one column per sweep parameter, a link to each run's last evaluation report.
std::string runs_table(const nlohmann::json& j, const std::string& to_work) {
  std::set<std::string> keys;
  for (const auto& r : j["runs"])
    for (const auto& [k, v] : r["params"].items()) keys.insert(k);
  std::vector<std::string> cols = {"run", "state"};
  cols.insert(cols.end(), keys.begin(), keys.end());
  cols.insert(cols.end(),
              {"failures", "checkpoints", "evaluated", "last step", "mean recall@1", "report"});
  std::string o = "<table id=\"runs\">\n" + head_row(cols);
  for (const auto& r : j["runs"]) {
    const std::string name = r["name"];
    o += "<tr>" + cell(name) + "<td>" + state_badge(r["state"]) + "</td>";
    for (const auto& k : keys)
      o += cell(r["params"].contains(k) ? r["params"][k].get<std::string>() : "");
    const int64_t step = r["last_step"];
    o += cell(std::to_string(r["failures"].get<int>()), true) +
         cell(std::to_string(r["checkpoints"].get<size_t>()), true) +
         cell(std::to_string(r["evaluated"].get<size_t>()), true) +
         cell(step < 0 ? "-" : std::to_string(step), true) + cell(mean_r1_cell(r), true);
    if (step < 0) {
      o += "<td>-</td>";
    } else {
      const std::string dir =
          to_work + "evals/" + url_segment(name) + fmt::format("/step-{:09d}/", step);
      o += fmt::format(
          "<td><a href=\"{0}report.md\">report</a> · <a href=\"{0}report.json\">json</a></td>",
          xml_escape(dir));
    }
    o += "</tr>\n";
  }
  return o + "</table>\n";
}

std::string scaling_html(State& state) {
  const auto table = scaling_table(state);
  std::string o = "<table id=\"scaling\">\n" + head_row(table.columns);
  for (const auto& row : table.rows) {
    o += "<tr>";
    for (size_t i = 0; i < row.size(); ++i) {
      const auto& c = table.columns[i];
      const bool num = c == "step" || c == "queries" || c.find('@') != std::string::npos;
      o += cell(row[i], num);
    }
    o += "</tr>\n";
  }
  return o + "</table>\n";
}

std::string plots_html(const std::filesystem::path& report_dir, const std::string& to_report) {
  const PlotOutcome plots = read_plot_outcome(report_dir);
  std::string o = "<div class=\"plots\">\n";
  for (const auto& f : plots.files) {
    // data-loaded records the size it loaded at; a chart that fails to load becomes a note.
    o += fmt::format(
        "<img src=\"{0}\" alt=\"{1}\" onload=\"this.dataset.loaded=this.naturalWidth+'x'+"
        "this.naturalHeight\" onerror=\"this.replaceWith('chart not available: {1}')\">\n",
        xml_escape(to_report + url_segment(f)), xml_escape(f));
  }
  o += "</div>\n";
  if (!plots.skipped.empty())
    o += "<p class=\"note\">Plots skipped: " + xml_escape(plots.skipped) + "</p>\n";
  return o;
}

std::string jobs_html(const nlohmann::json& j) {
  std::string o = "<details><summary>Jobs (" + std::to_string(j["jobs"].size()) +
                  ")</summary>\n<table id=\"jobs\">\n" +
                  head_row({"job", "kind", "state", "id", "exit", "reason"});
  for (const auto& job : j["jobs"]) {
    o += "<tr>" + cell(job["name"]) + cell(job["kind"]) + "<td>" + state_badge(job["state"]) +
         "</td>" + cell(job["backend_id"]) +
         cell(std::to_string(job["exit_code"].get<int>()), true) + cell(job["reason"]) + "</tr>\n";
  }
  o += "</table></details>\n<details><summary>Events (last " + std::to_string(j["events"].size()) +
       ")</summary>\n<ul>\n";
  for (const auto& e : j["events"]) {
    const std::string who = e["job"].get<std::string>().empty() ? e["run"].get<std::string>()
                                                                : e["job"].get<std::string>();
    o += "<li>" + xml_escape(who) + ": " + xml_escape(e["message"]) + "</li>\n";
  }
  return o + "</ul></details>\n";
}

}  // namespace

std::string status_html(State& state, const std::filesystem::path& report_dir, StatusLinks links) {
  const auto j = status_json(state);
  const bool served = links == StatusLinks::kServer;
  const std::string to_report = served ? "report/" : "", to_work = served ? "" : "../";
  std::map<std::string, int> by_state;
  for (const auto& r : j["runs"]) ++by_state[r["state"].get<std::string>()];
  std::string counts;
  for (const auto& [s, n] : by_state) counts += fmt::format(" · {} {}", n, s);
  const std::string sweep = xml_escape(j["sweep"].get<std::string>());
  std::string o =
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>m3ret sweep " +
      sweep + "</title><meta http-equiv=\"refresh\" content=\"10\"><style>" + kStyle +
      "</style></head><body>\n";
  o += "<h1>Sweep " + sweep + "</h1>\n<div class=\"meta\">" +
       xml_escape(j["backend"].get<std::string>()) + " backend · " +
       xml_escape(j["work_dir"].get<std::string>()) + " · " + std::to_string(j["runs"].size()) +
       " runs" + xml_escape(counts) + " · updated " + xml_escape(m3ret::utc_now()) +
       " · <a href=\"" + to_report + "scaling.csv\">scaling.csv</a> · <a href=\"" + to_report +
       "scaling.md\">scaling.md</a></div>\n";
  o += "<h2>Runs</h2>\n" + runs_table(j, to_work);
  o += "<h2>Plots</h2>\n" + plots_html(report_dir, to_report);
  o += "<h2>Scaling (last evaluated step of each run)</h2>\n" + scaling_html(state);
  o += "<h2>Jobs and events</h2>\n" + jobs_html(j);
  return o + "</body></html>\n";
}

void write_status_page(State& state, const std::filesystem::path& report_dir) {
  std::filesystem::create_directories(report_dir);
  m3ret::fs::write_atomic(report_dir / "status.html",
                          status_html(state, report_dir, StatusLinks::kStatic));
}

}  // namespace m3ret::orchestrator
