#include "launcher/orchestrator/report.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/csv.h"
#include "core/fs.h"

namespace m3ret::orchestrator {
namespace fs = std::filesystem;
namespace {

const std::vector<std::string> kPresetOrder = {"tiny", "small", "base", "large", "huge"};
const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

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
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string svg_line_chart(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<Series>& series,
                           const std::vector<std::string>& x_labels) {
  const double W = 640, H = 400, L = 60, R = 150, T = 40, B = 50;
  double x0 = 1e300, x1 = -1e300, y0 = 0, y1 = 1;
  for (const auto& s : series) {
    for (auto [x, y] : s.points) {
      x0 = std::min(x0, x);
      x1 = std::max(x1, x);
      y1 = std::max(y1, y);
    }
  }
  if (!x_labels.empty()) {
    x0 = 0;
    x1 = std::max<double>(1, static_cast<double>(x_labels.size()) - 1);
  }
  if (x0 > x1) x0 = 0, x1 = 1;
  if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return H - B - (std::clamp(y, y0, y1) - y0) / (y1 - y0) * (H - T - B); };
  std::string o = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">{}</text>\n",
      W, H, W, H, (W - R + L) / 2, xml_escape(title));
  // Axes and grid.
  o += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n", L, H - B, W - R);
  o += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n", L, T, H - B);
  for (int i = 0; i <= 5; ++i) {
    double y = y0 + (y1 - y0) * i / 5;
    o += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
                     "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:.2f}</text>\n",
                     L, py(y), W - R, L - 6, py(y) + 4, y);
  }
  if (!x_labels.empty()) {
    for (size_t i = 0; i < x_labels.size(); ++i) {
      o += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                       px(static_cast<double>(i)), H - B + 16, xml_escape(x_labels[i]));
    }
  } else {
    for (int i = 0; i <= 4; ++i) {
      double x = x0 + (x1 - x0) * i / 4;
      o += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:g}</text>\n", px(x),
                       H - B + 16, std::round(x * 1000) / 1000);
    }
  }
  o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", (W - R + L) / 2, H - 12, xml_escape(x_label));
  o += fmt::format("<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {0})\">{1}</text>\n",
                   (H - B + T) / 2, xml_escape(y_label));
  int n = 0;
  for (const auto& s : series) {
    if (s.points.empty()) continue;
    const char* c = kColors[n % 10];
    auto pts = s.points;
    std::sort(pts.begin(), pts.end());
    std::string path;
    for (auto [x, y] : pts) path += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    o += fmt::format("<polyline class=\"series\" data-name=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n",
                     xml_escape(s.name), c, path);
    for (auto [x, y] : pts) {
      o += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"><title>{}: {:.4f}</title></circle>\n",
                       px(x), py(y), c, xml_escape(s.name), y);
    }
    o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/>"
                     "<text x=\"{}\" y=\"{}\">{}</text>\n",
                     W - R + 10, T + n * 18, c, W - R + 26, T + n * 18 + 10, xml_escape(s.name));
    ++n;
  }
  if (n == 0) {
    o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#888\">no evaluations yet</text>\n",
                     (W - R + L) / 2, (H - B + T) / 2);
  }
  return o + "</svg>\n";
}

namespace {

// The cells of one modality's (or the mean's) row after the run's head cells.
std::vector<std::string> metric_cells(const std::map<std::string, double>& vals,
                                      const std::vector<std::string>& metrics) {
  std::vector<std::string> cells;
  for (const auto& m : metrics) {
    auto it = vals.find(m);
    cells.push_back(it == vals.end() ? "" : m == "queries" ? fmt::format("{:g}", it->second)
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
    for (const auto& cell : metric_cells(gone ? std::map<std::string, double>{} : f.values.at(modality), metrics))
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
  for (const auto& p : points) for (const auto& [k, v] : p.params) keys.insert(k);
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
      for (auto& ch : cell) if (ch == '|') ch = '/';
      o += " " + cell + " |";
    }
    o += "\n";
  }
  return o;
}

void write_scaling_report(State& state, const fs::path& dir) {
  fs::create_directories(dir);
  std::set<std::string> metric_set;
  auto points = final_points(state, &metric_set);
  std::string metric = plot_metric(metric_set);
  if (metric.empty()) metric = "recall@1";
  auto table = scaling_table(state);
  write_file(dir / "scaling.csv", to_csv(table));

  // recall vs model size / data fraction: one series per modality, averaged over the other axes.
  auto by_axis = [&](const std::string& key, bool categorical, std::vector<std::string>* labels) {
    std::map<std::string, std::map<double, std::pair<double, int>>> acc;  // modality -> x -> (sum, n)
    std::set<std::string> values;
    for (const auto& p : points) values.insert(p.params.count(key) ? p.params.at(key) : "");
    if (categorical) {
      std::vector<std::string> order;
      for (const auto& v : kPresetOrder) if (values.count(v)) order.push_back(v);
      for (const auto& v : values) if (std::find(order.begin(), order.end(), v) == order.end()) order.push_back(v);
      *labels = order;
    }
    for (const auto& p : points) {
      std::string v = p.params.count(key) ? p.params.at(key) : "";
      double x = categorical ? static_cast<double>(std::find(labels->begin(), labels->end(), v) - labels->begin())
                             : (v.empty() ? 1.0 : std::stod(v));
      for (const auto& [modality, vals] : p.final.values) {
        auto it = vals.find(metric);
        if (it == vals.end()) continue;
        acc[modality][x].first += it->second;
        acc[modality][x].second += 1;
      }
    }
    std::vector<Series> series;
    for (const auto& [modality, xs] : acc) {
      Series s{modality, {}};
      for (const auto& [x, sn] : xs) s.points.emplace_back(x, sn.first / sn.second);
      series.push_back(s);
    }
    return series;
  };
  std::vector<std::string> presets;
  auto model_series = by_axis("model.preset", true, &presets);
  write_file(dir / "recall_vs_model_size.svg",
             svg_line_chart(metric + " vs model size (final checkpoint)", "model preset", metric,
                            model_series, presets));
  std::vector<std::string> unused;
  write_file(dir / "recall_vs_data_fraction.svg",
             svg_line_chart(metric + " vs data fraction (final checkpoint)", "data fraction", metric,
                            by_axis("data_fraction", false, &unused)));
  // recall vs step: one series per run, the mean over modalities.
  std::map<std::string, Series> per_run;
  for (const auto& e : state.evaluations()) {
    if (e.modality != "mean" || e.metric != metric) continue;
    per_run[e.run].name = e.run;
    per_run[e.run].points.emplace_back(static_cast<double>(e.step), e.value);
  }
  std::vector<Series> steps;
  for (auto& [r, s] : per_run) steps.push_back(s);
  write_file(dir / "recall_vs_step.svg",
             svg_line_chart("mean " + metric + " over modalities vs step", "step", metric, steps));

  std::string md = "# Scaling report\n\nFinal evaluated checkpoint of every run of the sweep; `mean` "
                   "averages the modalities. Written by `m3ret orchestrate` from its state database.\n\n";
  md += to_markdown(table);
  md += "\n![recall vs model size](recall_vs_model_size.svg)\n"
        "![recall vs data fraction](recall_vs_data_fraction.svg)\n"
        "![recall vs step](recall_vs_step.svg)\n";
  write_file(dir / "scaling.md", md);
}

}  // namespace m3ret::orchestrator
