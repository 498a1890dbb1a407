#include "launcher/orchestrator/report.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/csv.h"
#include "core/fs.h"
#include "launcher/process.h"

#if !defined(M3RET_SOURCE_PYTHON_DIR) || !defined(M3RET_PYTHON_FROM_BIN)
#error "launcher/orchestrator/CMakeLists.txt defines where m3ret_plots.py is"
#endif

namespace m3ret::orchestrator {
namespace fs = std::filesystem;
namespace {

const std::vector<std::string> kPresetOrder = {"tiny", "small", "base", "large", "huge"};

// "recall@1" < "recall@5" < "recall@10" < "precision@..." < "map@..."; "queries" first.
bool metric_less(const std::string& a, const std::string& b) {
  auto rank = [](const std::string& m) {
    if (m == "queries") return std::make_pair(0, 0);
    int kind = m.rfind("recall@", 0) == 0 ? 1 : m.rfind("precision@", 0) == 0 ? 2 : 3;
    auto at = m.find('@');
    return std::make_pair(kind, at == std::string::npos ? 0 : std::atoi(m.c_str() + at + 1));
  };
  return rank(a) < rank(b);
}

struct RunPoint {
  RunRow run;
  std::map<std::string, std::string> params;
  FinalEvaluation final;
};

std::vector<RunPoint> final_points(State& state, std::set<std::string>* metrics) {
  std::vector<RunPoint> out;
  auto evals = state.evaluations();
  for (const auto& run : state.runs()) {
    RunPoint p;
    p.run = run;
    const auto params = nlohmann::json::parse(run.params_json);
    for (const auto& [k, v] : params.items()) p.params[k] = v.get<std::string>();
    p.final = final_evaluation(evals, run.name);
    for (const auto& [modality, vals] : p.final.values)
      for (const auto& [metric, v] : vals)
        if (metrics) metrics->insert(metric);
    out.push_back(std::move(p));
  }
  return out;
}

std::string plot_metric(const std::set<std::string>& metrics) {
  std::string best;
  int best_k = 1 << 30;
  for (const auto& m : metrics) {
    if (m.rfind("recall@", 0) == 0 && std::atoi(m.c_str() + 7) < best_k) {
      best_k = std::atoi(m.c_str() + 7);
      best = m;
    }
  }
  return best;
}

void write_file(const fs::path& p, const std::string& text) { m3ret::fs::write_atomic(p, text); }

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

size_t FinalEvaluation::modalities() const {
  std::set<std::string> names;
  for (const auto& [modality, vals] : values)
    if (modality != "mean") names.insert(modality);
  for (const auto& [modality, reason] : absent) names.insert(modality);
  return names.size();
}

std::string FinalEvaluation::mean_note() const {
  if (absent.empty()) return "";
  const size_t all = modalities();
  if (absent.size() == all) return "absent";
  return fmt::format("mean over {} of {}", all - absent.size(), all);
}

FinalEvaluation final_evaluation(const std::vector<Evaluation>& evals, const std::string& run) {
  FinalEvaluation f;
  for (const auto& e : evals)
    if (e.run == run) f.step = std::max(f.step, e.step);
  for (const auto& e : evals) {
    if (e.run != run || e.step != f.step) continue;
    if (e.absent.empty()) {
      f.values[e.modality][e.metric] = e.value;
    } else {
      f.absent[e.modality] = e.absent;
    }
  }
  return f;
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '&':
        o += "&amp;";
        break;
      case '"':
        o += "&quot;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

namespace {

// The cells of one modality's (or the mean's) row after the run's head cells.
std::vector<std::string> metric_cells(const std::map<std::string, double>& vals,
                                      const std::vector<std::string>& metrics) {
  std::vector<std::string> cells;
  for (const auto& m : metrics) {
    auto it = vals.find(m);
    cells.push_back(it == vals.end() ? ""
                    : m == "queries" ? fmt::format("{:g}", it->second)
                                     : fmt::format("{:.4f}", it->second));
  }
  return cells;
}

// The rows of one run: one per modality at its last evaluated step, absent
// modalities and the mean included; one row of empty cells before any evaluation.
void add_run_rows(ScalingTable& t, const RunPoint& p, const std::vector<std::string>& head,
                  const std::vector<std::string>& metrics) {
  const FinalEvaluation& f = p.final;
  if (f.step < 0) {
    auto row = head;
    row.resize(t.columns.size());
    t.rows.push_back(row);
    return;
  }
  std::set<std::string> modalities;
  for (const auto& [modality, vals] : f.values) modalities.insert(modality);
  for (const auto& [modality, reason] : f.absent) modalities.insert(modality);
  if (f.absent.size() == f.modalities()) modalities.insert("mean");  // "absent", as every modality
  for (const auto& modality : modalities) {
    auto row = head;
    row.push_back(std::to_string(f.step));
    row.push_back(modality);
    const bool is_mean = modality == "mean";
    const bool gone = is_mean ? !f.values.count("mean") : f.absent.count(modality) > 0;
    for (const auto& cell :
         metric_cells(gone ? std::map<std::string, double>{} : f.values.at(modality), metrics))
      row.push_back(gone ? "absent" : cell);
    row.push_back(is_mean ? f.mean_note() : gone ? "absent: " + f.absent.at(modality) : "");
    t.rows.push_back(row);
  }
}

}  // namespace

ScalingTable scaling_table(State& state) {
  std::set<std::string> metric_set;
  auto points = final_points(state, &metric_set);
  std::vector<std::string> metrics(metric_set.begin(), metric_set.end());
  std::sort(metrics.begin(), metrics.end(), metric_less);
  std::set<std::string> keys;
  for (const auto& p : points)
    for (const auto& [k, v] : p.params) keys.insert(k);
  ScalingTable t;
  t.columns = {"run", "state"};
  t.columns.insert(t.columns.end(), keys.begin(), keys.end());
  t.columns.insert(t.columns.end(), {"step", "modality"});
  t.columns.insert(t.columns.end(), metrics.begin(), metrics.end());
  t.columns.push_back("note");
  for (const auto& p : points) {
    std::vector<std::string> head = {p.run.name, to_string(p.run.state)};
    for (const auto& k : keys) head.push_back(p.params.count(k) ? p.params.at(k) : "");
    add_run_rows(t, p, head, metrics);
  }
  return t;
}

std::string to_csv(const ScalingTable& t) {
  std::string o;
  for (size_t i = 0; i < t.columns.size(); ++i) o += (i ? "," : "") + csv::quote(t.columns[i]);
  o += "\n";
  for (const auto& r : t.rows) {
    for (size_t i = 0; i < r.size(); ++i) o += (i ? "," : "") + csv::quote(r[i]);
    o += "\n";
  }
  return o;
}

std::string to_markdown(const ScalingTable& t) {
  std::string o = "|";
  for (const auto& c : t.columns) o += " " + c + " |";
  o += "\n|";
  for (size_t i = 0; i < t.columns.size(); ++i) o += "---|";
  o += "\n";
  for (const auto& r : t.rows) {
    o += "|";
    for (const auto& v : r) {
      std::string cell = v;
      for (auto& ch : cell)
        if (ch == '|') ch = '/';
      o += " " + cell + " |";
    }
    o += "\n";
  }
  return o;
}

namespace {

bool is_seed_axis(const std::string& k) {
  return k == "seed" || (k.size() > 5 && k.compare(k.size() - 5, 5, ".seed") == 0);
}
bool is_model_axis(const std::string& k) { return k.rfind("model.", 0) == 0; }

// The axes with more than one value over the runs, in key order.
std::vector<std::string> swept_axes(const std::vector<RunPoint>& points) {
  std::map<std::string, std::set<std::string>> values;
  for (const auto& p : points)
    for (const auto& [k, v] : p.params) values[k].insert(v);
  std::vector<std::string> out;
  for (const auto& [k, vs] : values)
    if (vs.size() > 1) out.push_back(k);
  return out;
}

std::string param_of(const RunPoint& p, const std::string& key) {
  auto it = p.params.find(key);
  return it == p.params.end() ? "" : it->second;
}

// "k1=v1, k2=v2" over `keys` (the values alone with `values_only`).
std::string group_label(const RunPoint& p, const std::vector<std::string>& keys,
                        bool values_only = false) {
  std::vector<std::string> parts;
  for (const auto& k : keys)
    parts.push_back(values_only ? param_of(p, k) : k + "=" + param_of(p, k));
  return fmt::format("{}", fmt::join(parts, values_only ? "/" : ", "));
}

// Values of one series aggregated per x: mean, min, max and count.
class Aggregate {
 public:
  void add(const std::string& series, double x, double y) {
    Cell& c = cells_[series][x];
    c.sum += y;
    c.lo = std::min(c.lo, y);
    c.hi = std::max(c.hi, y);
    ++c.n;
  }
  // Series in name order, "mean" last and emphasised.
  nlohmann::json to_json() const {
    nlohmann::json out = nlohmann::json::array(), mean;
    for (const auto& [name, xs] : cells_) {
      nlohmann::json s = {
          {"label", name}, {"emphasis", name == "mean"}, {"points", nlohmann::json::array()}};
      for (const auto& [x, c] : xs)
        s["points"].push_back(
            {{"x", x}, {"y", c.sum / c.n}, {"lo", c.lo}, {"hi", c.hi}, {"n", c.n}});
      (name == "mean" ? mean : out.emplace_back()) = s;
    }
    if (!mean.is_null()) out.push_back(mean);
    return out;
  }

 private:
  struct Cell {
    double sum = 0, lo = 1e300, hi = -1e300;
    int n = 0;
  };
  std::map<std::string, std::map<double, Cell>> cells_;
};

std::optional<double> value_of(const FinalEvaluation& f, const std::string& modality,
                               const std::string& metric) {
  auto m = f.values.find(modality);
  if (m == f.values.end()) return std::nullopt;
  auto it = m->second.find(metric);
  if (it == m->second.end()) return std::nullopt;
  return it->second;
}

struct AxisX {
  double x;
  std::string tick;  // label of the tick at x
};
using XOf = std::function<std::optional<AxisX>(const RunPoint&)>;

// The final metric against x_of(run). Series: the modalities and their mean
// when `group_keys` is empty, else one per combination of those axes (the
// mean over modalities). Ticks at every x that has a point.
nlohmann::json axis_chart(const std::vector<RunPoint>& points,
                          const std::vector<std::string>& group_keys, const std::string& metric,
                          const XOf& x_of) {
  Aggregate agg;
  std::map<double, std::string> ticks;
  for (const auto& p : points) {
    auto x = x_of(p);
    if (!x) continue;
    ticks[x->x] = x->tick;
    if (group_keys.empty()) {
      for (const auto& [modality, vals] : p.final.values)
        if (auto y = value_of(p.final, modality, metric)) agg.add(modality, x->x, *y);
    } else if (auto y = value_of(p.final, "mean", metric)) {
      agg.add(group_label(p, group_keys), x->x, *y);
    }
  }
  nlohmann::json c = {
      {"series", agg.to_json()},
      {"x_ticks", nlohmann::json::array()},
      {"legend_title", group_keys.empty() ? std::string("modality")
                                          : fmt::format("{}", fmt::join(group_keys, ", "))},
      {"integer_x", false},
      {"x_scale", "linear"}};
  for (const auto& [x, label] : ticks) c["x_ticks"].push_back({{"x", x}, {"label", label}});
  return c;
}

std::string si(double v) {
  if (v >= 1e9) return fmt::format("{:.3g}B", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.3g}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.3g}k", v / 1e3);
  return fmt::format("{:g}", v);
}

// Positions of categorical values: presets in size order, numbers in value
// order, the rest in text order.
std::map<std::string, double> category_positions(std::set<std::string> values) {
  std::vector<std::string> order;
  for (const auto& v : kPresetOrder)
    if (values.erase(v)) order.push_back(v);
  std::vector<std::string> rest(values.begin(), values.end());
  auto num = [](const std::string& s, double* d) {
    char* end = nullptr;
    *d = std::strtod(s.c_str(), &end);
    return !s.empty() && end && *end == '\0';
  };
  std::stable_sort(rest.begin(), rest.end(), [&](const std::string& a, const std::string& b) {
    double x = 0, y = 0;
    return num(a, &x) && num(b, &y) ? x < y : a < b;
  });
  order.insert(order.end(), rest.begin(), rest.end());
  std::map<std::string, double> pos;
  for (size_t i = 0; i < order.size(); ++i) pos[order[i]] = static_cast<double>(i);
  return pos;
}

nlohmann::json category_chart(const std::vector<RunPoint>& points,
                              const std::vector<std::string>& keys,
                              const std::vector<std::string>& group_keys,
                              const std::string& metric) {
  std::set<std::string> values;
  for (const auto& p : points) values.insert(group_label(p, keys, true));
  const auto pos = category_positions(values);
  return axis_chart(points, group_keys, metric, [&](const RunPoint& p) -> std::optional<AxisX> {
    const std::string v = group_label(p, keys, true);
    return AxisX{pos.at(v), v};
  });
}

nlohmann::json model_chart(const std::vector<RunPoint>& points,
                           const std::vector<std::string>& model_keys,
                           const std::vector<std::string>& group_keys, const std::string& metric,
                           const std::map<std::string, double>& params) {
  const bool have = std::all_of(points.begin(), points.end(),
                                [&](const RunPoint& p) { return params.count(p.run.name) > 0; });
  nlohmann::json c;
  if (have) {
    c = axis_chart(points, group_keys, metric, [&](const RunPoint& p) -> std::optional<AxisX> {
      const double n = params.at(p.run.name);
      return AxisX{n, si(n) + "\n" + group_label(p, model_keys, true)};
    });
    c["x_scale"] = "log";
    c["x_label"] = "encoder parameters (log scale)";
  } else {
    c = category_chart(points, model_keys, group_keys, metric);
    c["x_label"] = fmt::format("{} (parameter counts unavailable)", fmt::join(model_keys, "/"));
  }
  c["file"] = "recall_vs_model_size.png";
  c["title"] = metric + " vs model size (last evaluated checkpoint)";
  return c;
}

nlohmann::json step_chart(State& state, const std::vector<RunPoint>& points,
                          const std::vector<std::string>& group_keys, const std::string& metric) {
  std::map<std::string, std::string> label;
  for (const auto& p : points)
    label[p.run.name] = group_keys.empty() ? "mean over modalities" : group_label(p, group_keys);
  Aggregate agg;
  for (const auto& e : state.evaluations()) {
    if (e.modality != "mean" || e.metric != metric || !e.absent.empty() || !label.count(e.run))
      continue;
    agg.add(label[e.run], static_cast<double>(e.step), e.value);
  }
  return {{"file", "recall_vs_step.png"},
          {"title", "mean " + metric + " over modalities vs training step"},
          {"x_label", "training step"},
          {"x_scale", "linear"},
          {"integer_x", true},
          {"legend_title", fmt::format("{}", fmt::join(group_keys, ", "))},
          {"series", agg.to_json()}};
}

std::string join_keys(const std::vector<std::string>& keys) {
  return fmt::format("{}", fmt::join(keys, ", "));
}

}  // namespace

nlohmann::json plot_data(State& state, const std::map<std::string, double>& model_params) {
  std::set<std::string> metric_set;
  const auto points = final_points(state, &metric_set);
  std::string metric = plot_metric(metric_set);
  if (metric.empty()) metric = "recall@1";
  const auto swept = swept_axes(points);
  std::vector<std::string> seeds, model, others, non_seed;
  for (const auto& k : swept) {
    if (is_seed_axis(k)) {
      seeds.push_back(k);
      continue;
    }
    non_seed.push_back(k);
    if (is_model_axis(k))
      model.push_back(k);
    else if (k != "data_fraction")
      others.push_back(k);
  }
  auto without = [&](const std::vector<std::string>& drop) {
    std::vector<std::string> out;
    for (const auto& k : non_seed)
      if (std::find(drop.begin(), drop.end(), k) == drop.end()) out.push_back(k);
    return out;
  };
  nlohmann::json plots = nlohmann::json::array();
  if (!model.empty())
    plots.push_back(model_chart(points, model, without(model), metric, model_params));
  if (std::find(swept.begin(), swept.end(), "data_fraction") != swept.end()) {
    auto c = axis_chart(
        points, without({"data_fraction"}), metric, [](const RunPoint& p) -> std::optional<AxisX> {
          return AxisX{p.run.data_fraction, fmt::format("{:g}", p.run.data_fraction)};
        });
    c.update({{"file", "recall_vs_data_fraction.png"},
              {"title", metric + " vs data fraction (last evaluated checkpoint)"},
              {"x_label", "data fraction (share of the training rows, log scale)"},
              {"x_scale", "log"}});
    plots.push_back(c);
  }
  for (const auto& k : others) {
    auto c = category_chart(points, {k}, without({k}), metric);
    c.update({{"file", "recall_vs_" + k + ".png"},
              {"title", metric + " vs " + k + " (last evaluated checkpoint)"},
              {"x_label", k}});
    plots.push_back(c);
  }
  plots.push_back(step_chart(state, points, non_seed, metric));
  const std::string note =
      seeds.empty()
          ? "one run per point"
          : fmt::format(
                "each point: mean over the runs that differ only in {}; error bars: min-max",
                join_keys(seeds));
  for (auto& c : plots) {
    c["y_label"] = metric;
    c["note"] = note;
  }
  return {{"format", "m3ret-plot-data"},
          {"version", 1},
          {"metric", metric},
          {"swept_axes", swept},
          {"seed_axes", seeds},
          {"error_bars", seeds.empty() ? "none" : "min-max over " + join_keys(seeds)},
          {"plots", plots}};
}

fs::path default_python() {
  if (const char* env = std::getenv("M3RET_PLOT_PYTHON"); env && *env) return env;
  if (::access("/usr/bin/python3", X_OK) == 0) return "/usr/bin/python3";
  return "python3";
}

fs::path find_plot_script() {
  for (const fs::path& dir : {launcher::self_path().parent_path() / M3RET_PYTHON_FROM_BIN,
                              fs::path(M3RET_SOURCE_PYTHON_DIR)}) {
    std::error_code ec;
    if (fs::is_regular_file(dir / "m3ret_plots.py", ec))
      return (dir / "m3ret_plots.py").lexically_normal();
  }
  return {};
}

PlotOutcome read_plot_outcome(const fs::path& report_dir) {
  PlotOutcome out;
  std::ifstream in(report_dir / "plots.json");
  if (!in) return out;
  try {
    const auto j = nlohmann::json::parse(in);
    out.files = j.at("files").get<std::vector<std::string>>();
    out.skipped = j.at("skipped").get<std::string>();
  } catch (const std::exception& e) {
    out.skipped =
        fmt::format("'{}' is unreadable: {}", (report_dir / "plots.json").string(), e.what());
  }
  return out;
}

namespace {

std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  auto nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

// Runs the plotting script on DIR/plot_data.json; "" when every chart was
// drawn, else why not (one line).
std::string draw_plots(const fs::path& dir, const nlohmann::json& data, const PlotOptions& o) {
  const fs::path script = o.script.empty() ? find_plot_script() : o.script;
  std::error_code ec;
  if (script.empty() || !fs::is_regular_file(script, ec)) {
    return script.empty()
               ? fmt::format("the plotting script m3ret_plots.py is neither in {} nor in {}",
                             (launcher::self_path().parent_path() / M3RET_PYTHON_FROM_BIN)
                                 .lexically_normal()
                                 .string(),
                             M3RET_SOURCE_PYTHON_DIR)
               : fmt::format("the plotting script '{}' does not exist", script.string());
  }
  const fs::path python = o.python.empty() ? default_python() : o.python;
  const auto r = launcher::run_capture(
      {python.string(), script.string(), (dir / "plot_data.json").string(), dir.string()});
  if (r.status == 127) {
    return fmt::format(
        "Python '{}' could not be started (set M3RET_PLOT_PYTHON to a Python 3 with matplotlib)",
        python.string());
  }
  if (r.status != 0)
    return fmt::format("{} exited with {}: {}", script.filename().string(), r.status,
                       last_line(r.err));
  for (const auto& c : data["plots"]) {
    const std::string f = c["file"];
    if (!fs::is_regular_file(dir / f, ec))
      return fmt::format("{} did not write {}", script.filename().string(), f);
  }
  return "";
}

// Writes plot_data.json and redraws the charts when it changed (or a chart is missing).
PlotOutcome update_plots(const fs::path& dir, const nlohmann::json& data, const PlotOptions& o) {
  const std::string text = data.dump(1) + "\n";
  const PlotOutcome prev = read_plot_outcome(dir);
  std::error_code ec;
  if (fs::exists(dir / "plots.json", ec) && read_text(dir / "plot_data.json") == text &&
      std::all_of(prev.files.begin(), prev.files.end(),
                  [&](const std::string& f) { return fs::exists(dir / f, ec); })) {
    return prev;
  }
  write_file(dir / "plot_data.json", text);
  PlotOutcome out;
  out.skipped = draw_plots(dir, data, o);
  for (const auto& c : data["plots"]) {
    if (out.skipped.empty())
      out.files.push_back(c["file"]);
    else
      fs::remove(dir / c["file"].get<std::string>(), ec);  // no stale chart beside the new data
  }
  if (!out.skipped.empty() && out.skipped != prev.skipped)
    spdlog::warn("orchestrate: plots skipped: {}", out.skipped);
  write_file(dir / "plots.json",
             nlohmann::json{{"files", out.files}, {"skipped", out.skipped}}.dump(1) + "\n");
  return out;
}

}  // namespace

void write_scaling_report(State& state, const fs::path& dir, const ReportOptions& opts) {
  fs::create_directories(dir);
  const auto table = scaling_table(state);
  write_file(dir / "scaling.csv", to_csv(table));
  const PlotOutcome plots = update_plots(dir, plot_data(state, opts.model_params), opts.plots);
  std::string md =
      "# Scaling report\n\nFinal evaluated checkpoint of every run of the sweep; `mean` "
      "averages the modalities. Written by `m3ret orchestrate` from its state database.\n\n";
  md += to_markdown(table);
  md += "\n## Plots\n\n";
  if (!plots.skipped.empty()) md += "Plots skipped: " + plots.skipped + "\n";
  for (const auto& f : plots.files)
    md += fmt::format("![{}]({})\n", fs::path(f).stem().string(), f);
  write_file(dir / "scaling.md", md);
}

}  // namespace m3ret::orchestrator
