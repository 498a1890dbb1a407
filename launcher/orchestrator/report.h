// The scaling report of a sweep, from the evaluations in the state:
//   scaling.csv  one row per (run, modality) at the run's last evaluated step
//   scaling.md   the same as Markdown tables, with links to the plots
//   recall_vs_model_size.svg, recall_vs_data_fraction.svg, recall_vs_step.svg
// Points that share an x value (e.g. several seeds) are averaged; the plotted
// metric is the smallest-k recall present (normally recall@1).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "launcher/orchestrator/state.h"

namespace m3ret::orchestrator {

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), drawn in x order
};

// Text escaped for XML/HTML content and attributes.
std::string xml_escape(const std::string& s);

// A self-contained SVG line chart. With `x_labels`, x values are indices into
// it (a categorical axis); otherwise the axis is numeric. Values are clamped
// to the plot; empty series are skipped.
std::string svg_line_chart(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<Series>& series,
                           const std::vector<std::string>& x_labels = {});

// A run's evaluation at its last evaluated step.
struct FinalEvaluation {
  int64_t step = -1;  // -1: not evaluated yet
  std::map<std::string, std::map<std::string, double>> values;  // modality or "mean" -> metric -> value
  std::map<std::string, std::string> absent;                    // modality -> why it has no figure
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

// Writes every file of the report into `dir`, each atomically.
void write_scaling_report(State& state, const std::filesystem::path& dir);

}  // namespace m3ret::orchestrator
