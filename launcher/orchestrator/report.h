// The scaling report of a sweep, from the evaluations in the state:
//   scaling.csv     one row per (run, modality) at the run's last evaluated step
//   scaling.md      the same as Markdown tables, with the plots (or why they were skipped)
//   plot_data.json  the charts' series (format "m3ret-plot-data" 1), computed here
//   *.png           the charts, drawn from plot_data.json by python/m3ret_plots.py
//                   (matplotlib); plots.json records what was drawn or why not
// Only swept axes (more than one value) are plotted: recall vs model size
// (encoder parameters, log axis), vs data fraction (log axis), vs any other
// swept axis, and vs step. Runs that differ only in a seed axis (`*.seed`)
// are one point: the mean, with min-max error bars. The plotted metric is the
// smallest-k recall present (normally recall@1).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "launcher/orchestrator/state.h"

namespace m3ret::orchestrator {

// Text escaped for XML/HTML content and attributes.
std::string xml_escape(const std::string& s);

// How the charts are drawn: `python SCRIPT PLOT_DATA.json REPORT_DIR`.
struct PlotOptions {
  std::filesystem::path python;  // "" = default_python()
  std::filesystem::path script;  // "" = find_plot_script()
};
// $M3RET_PLOT_PYTHON when set, else /usr/bin/python3 (Debian's, where python3-matplotlib
// installs), else python3 on PATH.
std::filesystem::path default_python();
// m3ret_plots.py in share/m3ret/python of the prefix the binary is installed in,
// then in the source tree's python/; "" when neither exists.
std::filesystem::path find_plot_script();

// What the last drawing produced (REPORT_DIR/plots.json): the PNG files, or
// the one-line reason they were skipped (matplotlib missing, ...).
struct PlotOutcome {
  std::vector<std::string> files;
  std::string skipped;
};
PlotOutcome read_plot_outcome(const std::filesystem::path& report_dir);

// The charts' data: {"format": "m3ret-plot-data", "version": 1, "metric",
// "swept_axes", "seed_axes", "error_bars", "plots": [{"file", "title",
// "x_label", "y_label", "x_scale", "integer_x", "x_ticks", "legend_title",
// "note", "series": [{"label", "emphasis", "points": [{"x", "y", "lo", "hi",
// "n"}]}]}]}. `model_params` maps runs to their encoder's parameter count;
// without one for every run the model-size axis is the presets in size order.
nlohmann::json plot_data(State& state, const std::map<std::string, double>& model_params = {});

// A run's evaluation at its last evaluated step.
struct FinalEvaluation {
  int64_t step = -1;  // -1: not evaluated yet
  std::map<std::string, std::map<std::string, double>>
      values;                                 // modality or "mean" -> metric -> value
  std::map<std::string, std::string> absent;  // modality -> why it has no figure
  // Modalities in the evaluation, absent ones included ("mean" is none).
  size_t modalities() const;
  // What the mean covers: "" when every modality, "mean over 2 of 3" when some
  // are absent, "absent" when all are (then there is no mean).
  std::string mean_note() const;
};
FinalEvaluation final_evaluation(const std::vector<Evaluation>& evals, const std::string& run);

struct ScalingTable {
  // run, state, params..., step, modality, metrics..., note. An absent modality
  // reads "absent" in its metric cells and "absent: <reason>" in its note; the
  // mean row's note says how many modalities it covers when some are absent.
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
};
ScalingTable scaling_table(State& state);
std::string to_csv(const ScalingTable& t);
std::string to_markdown(const ScalingTable& t);

struct ReportOptions {
  PlotOptions plots;
  std::map<std::string, double> model_params;  // run -> encoder parameters (see plot_data)
};

// Writes every file of the report into `dir`, each atomically. The charts are
// redrawn only when their data changed; when they cannot be drawn the report
// says why and nothing fails.
void write_scaling_report(State& state, const std::filesystem::path& dir,
                          const ReportOptions& opts = {});

}  // namespace m3ret::orchestrator
