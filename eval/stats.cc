#include "eval/stats.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "eval/report.h"

namespace m3ret::eval {
namespace {

using ojson = nlohmann::ordered_json;

std::string num(double v) { return fmt::format("{:.3f}", v); }

RowVerdict judge(const std::vector<std::pair<std::string, Report>>& columns, const ReportRow& row,
                 int64_t k) {
  const Metrics& m = row.metrics;
  RowVerdict v;
  v.row = row.name();
  v.k = k;
  v.recall = m.recall.at(k);
  v.chance = m.chance_recall.count(k) ? m.chance_recall.at(k) : 0.0;
  v.has_interval = m.ci_recall.count(k) > 0;
  if (v.has_interval) v.ci = m.ci_recall.at(k);
  v.beats_chance = v.has_interval && v.ci.lo > v.chance;
  const std::string variant_prefix = columns.front().first + "-";
  for (size_t c = 1; c < columns.size(); ++c) {
    if (columns[c].first.rfind(variant_prefix, 0) == 0) continue;  // a variant, not a rival
    const ReportRow* other = columns[c].second.find(v.row);
    if (!other || other->metrics.queries == 0 || !other->metrics.recall.count(k)) continue;
    const double r = other->metrics.recall.at(k);
    v.rivals.push_back({columns[c].first, r, v.has_interval && v.ci.lo > r});
  }
  return v;
}

// "xray (unseen)", "ct->mri (unseen)".
std::string row_label(const std::string& row, const std::vector<std::string>& unseen) {
  auto marked = [&](const std::string& m) {
    return std::find(unseen.begin(), unseen.end(), m) != unseen.end() ? m + " (unseen)" : m;
  };
  const auto arrow = row.find("->");
  if (arrow == std::string::npos) return marked(row);
  return marked(row.substr(0, arrow)) + "->" + marked(row.substr(arrow + 2));
}

}  // namespace

bool RowVerdict::beats_all() const {
  return beats_chance &&
         std::all_of(rivals.begin(), rivals.end(), [](const Rival& r) { return r.beaten; });
}

namespace {

// What verdicts and probe checks need: at least one report, and k among the first one's ks.
void check_columns(const std::vector<std::pair<std::string, Report>>& columns, int64_t k) {
  if (columns.empty()) throw Error("verdict: no report");
  const auto& ks = columns.front().second.ks;
  if (std::find(ks.begin(), ks.end(), k) == ks.end())
    throw Error(
        fmt::format("verdict: k = {} is not one of the report's ks [{}]", k, fmt::join(ks, ", ")));
}

}  // namespace

std::vector<RowVerdict> verdicts(const std::vector<std::pair<std::string, Report>>& columns,
                                 int64_t k) {
  check_columns(columns, k);
  const Report& first = columns.front().second;
  std::vector<RowVerdict> out;
  for (const auto* rows : {&first.per_modality, &first.cross_modal})
    for (const auto& row : *rows)
      if (row.metrics.queries > 0) out.push_back(judge(columns, row, k));
  return out;
}

std::vector<std::string> verdict_lines(const std::vector<std::pair<std::string, Report>>& columns,
                                       int64_t k) {
  std::vector<std::string> lines;
  for (const auto& v : verdicts(columns, k)) {
    std::vector<std::string> beaten, not_beaten;
    (v.beats_chance ? beaten : not_beaten).push_back("chance " + num(v.chance));
    for (const auto& r : v.rivals)
      (r.beaten ? beaten : not_beaten).push_back(r.name + " " + num(r.recall));
    std::string line =
        fmt::format("{} R@{}: {} {}", row_label(v.row, columns.front().second.unseen), k,
                    columns.front().first, num(v.recall));
    if (!v.has_interval)
      line += " (no interval: eval.bootstrap = 0)";
    else
      line += fmt::format(" [{}–{}]", num(v.ci.lo), num(v.ci.hi));
    if (not_beaten.empty()) {
      line += fmt::format(" beats {}", fmt::join(beaten, ", "));
    } else {
      line += fmt::format(" does NOT beat {}", fmt::join(not_beaten, ", "));
      if (!beaten.empty()) line += fmt::format(" (beats {})", fmt::join(beaten, ", "));
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

ojson verdict_json(const std::vector<std::pair<std::string, Report>>& columns, int64_t k) {
  ojson j;
  j["k"] = k;
  j["rows"] = ojson::object();
  for (const auto& v : verdicts(columns, k)) {
    ojson r;
    r["recall"] = v.recall;
    r["ci95"] = v.has_interval ? ojson::array({v.ci.lo, v.ci.hi}) : ojson(nullptr);
    r["chance"] = v.chance;
    r["beats_chance"] = v.beats_chance;
    r["beats"] = ojson::object();
    for (const auto& rival : v.rivals) r["beats"][rival.name] = rival.beaten;
    j["rows"][v.row] = std::move(r);
  }
  j["probes"] = ojson::object();
  for (const auto& p : probe_checks(columns, k))
    j["probes"][p.probe] = {{"checked", p.rows}, {"above_chance", p.above}};
  return j;
}

namespace {

bool is_probe(const std::string& name, const Report& r) {
  const std::string& e = r.source.encoder;
  if (r.source.random_init || e == "random-init" || e == "raw-pixels" || e == "histogram")
    return true;
  return e.empty() && (name == "random-init" || name == "raw-pixels" || name == "histogram");
}

}  // namespace

std::vector<ProbeCheck> probe_checks(const std::vector<std::pair<std::string, Report>>& columns,
                                     int64_t k) {
  check_columns(columns, k);
  const auto& unseen = columns.front().second.unseen;
  std::vector<ProbeCheck> out;
  for (size_t c = 1; c < columns.size(); ++c) {
    const auto& [name, report] = columns[c];
    if (!is_probe(name, report)) continue;
    ProbeCheck p;
    p.probe = name;
    for (const auto* rows : {&report.per_modality, &report.cross_modal})
      for (const auto& row : *rows) {
        const Metrics& m = row.metrics;
        if (m.queries == 0 || !m.ci_recall.count(k) || !m.recall.count(k)) continue;
        p.rows.push_back(row.name());
        const double chance = m.chance_recall.count(k) ? m.chance_recall.at(k) : 0.0;
        const Interval ci = m.ci_recall.at(k);
        if (ci.lo <= chance) continue;
        p.above.push_back(row.name());
        p.above_text.push_back(fmt::format("{} {} [{}–{}] (chance {})",
                                           row_label(row.name(), unseen), num(m.recall.at(k)),
                                           num(ci.lo), num(ci.hi), num(chance)));
      }
    out.push_back(std::move(p));
  }
  return out;
}

std::string probe_heading(int64_t k) {
  return fmt::format(
      "Do the shortcut probes stay at chance? (recall@{}: a probe whose 95 % interval lies above "
      "chance finds the class without learning anything; the data let a shortcut through there)",
      k);
}

std::string verdict_heading(const std::vector<std::pair<std::string, Report>>& columns, int64_t k) {
  if (columns.empty()) throw Error("verdict: no report");
  return fmt::format("Verdict (recall@{}: is the 95 % interval of {} above chance{}?)", k,
                     columns.front().first,
                     columns.size() > 1 ? " and above each other encoder" : "");
}

std::string verdict_text(const std::vector<std::pair<std::string, Report>>& columns, int64_t k) {
  std::string out;
  for (const auto& line : verdict_lines(columns, k)) out += "  " + line + "\n";
  const auto probes = probe_lines(columns, k);
  if (!probes.empty()) out += probe_heading(k) + "\n";
  for (const auto& line : probes) out += "  " + line + "\n";
  return out;
}

std::vector<std::string> probe_lines(const std::vector<std::pair<std::string, Report>>& columns,
                                     int64_t k) {
  std::vector<std::string> lines;
  for (const auto& p : probe_checks(columns, k)) {
    std::string line = fmt::format("{} R@{}: ", p.probe, k);
    if (p.rows.empty()) {
      lines.push_back(line + "no interval (eval.bootstrap = 0): not checked");
      continue;
    }
    auto cross = [](const std::string& row) { return row.find("->") != std::string::npos; };
    std::vector<std::string> modalities;
    size_t cross_rows = 0, cross_above = 0;
    for (const auto& row : p.rows) cross_rows += cross(row);
    for (size_t i = 0; i < p.above.size(); ++i) {
      if (cross(p.above[i]))
        ++cross_above;
      else
        modalities.push_back(p.above_text[i]);
    }
    line += modalities.empty()
                ? std::string("no modality above chance")
                : "above chance in " + fmt::format("{}", fmt::join(modalities, ", "));
    if (cross_rows > 0)
      line += fmt::format("; {} of {} cross-modal rows above chance", cross_above, cross_rows);
    lines.push_back(std::move(line));
  }
  return lines;
}

namespace {

// The metric names of a row, in report order: recall@k, precision@k, map@K.
std::vector<std::string> metric_names(const std::vector<int64_t>& ks) {
  std::vector<std::string> names;
  for (int64_t k : ks) names.push_back(fmt::format("recall@{}", k));
  for (int64_t k : ks) names.push_back(fmt::format("precision@{}", k));
  names.push_back(fmt::format("map@{}", ks.back()));
  return names;
}

double metric_value(const Metrics& m, const std::string& name) {
  const auto at = name.find('@');
  const int64_t k = std::stoll(name.substr(at + 1));
  if (name.rfind("recall@", 0) == 0) return m.recall.at(k);
  if (name.rfind("precision@", 0) == 0) return m.precision.at(k);
  return m.map_at_k;
}

// mean, sd, min and max over the seeds where the row was evaluated; "values"
// holds null for a seed where it was absent, and "evaluated" the count. A row
// absent in every seed has null statistics.
ojson describe(const std::vector<std::optional<double>>& all) {
  std::vector<double> v;
  ojson values = ojson::array();
  for (const auto& x : all) {
    values.push_back(x ? ojson(*x) : ojson(nullptr));
    if (x) v.push_back(*x);
  }
  ojson j;
  j["evaluated"] = v.size();
  if (v.empty()) {
    for (const char* key : {"mean", "sd", "min", "max"}) j[key] = nullptr;
    j["values"] = std::move(values);
    return j;
  }
  const double n = static_cast<double>(v.size());
  double mean = 0;
  for (double x : v) mean += x / n;
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  j["mean"] = mean;
  j["sd"] = v.size() > 1 ? std::sqrt(ss / (n - 1)) : 0.0;
  j["min"] = *std::min_element(v.begin(), v.end());
  j["max"] = *std::max_element(v.begin(), v.end());
  j["values"] = std::move(values);
  return j;
}

// "encoder/kind/row" names of a comparison, to check that all seeds agree.
std::vector<std::string> layout(const std::vector<std::pair<std::string, Report>>& columns) {
  std::vector<std::string> names;
  for (const auto& [enc, r] : columns) {
    for (const auto& row : r.per_modality) names.push_back(enc + " per_modality " + row.name());
    for (const auto& row : r.cross_modal) names.push_back(enc + " cross_modal " + row.name());
  }
  return names;
}

// Recall@k and its chance per label of row r (cross-modal or not) of encoder c
// over the seeds, for every label any seed has there (first appearance order);
// a seed without the label counts as absent. Empty when no seed has labels.
ojson label_summary(const std::vector<std::vector<std::pair<std::string, Report>>>& all, size_t c,
                    bool cross, size_t r, const std::vector<int64_t>& ks) {
  auto row_of = [&](const std::vector<std::pair<std::string, Report>>& columns) -> const Metrics& {
    return (cross ? columns[c].second.cross_modal : columns[c].second.per_modality)[r].metrics;
  };
  std::vector<std::string> labels;
  for (const auto& columns : all)
    for (const auto& [label, lm] : row_of(columns).per_label)
      if (std::find(labels.begin(), labels.end(), label) == labels.end()) labels.push_back(label);
  ojson out = ojson::object();
  for (const auto& label : labels) {
    auto over_seeds = [&](bool chance, int64_t k) {
      std::vector<std::optional<double>> values;
      for (const auto& columns : all) {
        const auto& per_label = row_of(columns).per_label;
        const auto it = per_label.find(label);
        const auto* v = it == per_label.end()
                            ? nullptr
                            : (chance ? &it->second.chance_recall : &it->second.recall);
        values.push_back(v && it->second.queries > 0 && v->count(k) ? std::optional(v->at(k))
                                                                    : std::nullopt);
      }
      return describe(values);
    };
    ojson lj;
    for (int64_t k : ks) lj[fmt::format("recall@{}", k)] = over_seeds(false, k);
    lj["chance"] = ojson::object();
    for (int64_t k : ks) lj["chance"][fmt::format("recall@{}", k)] = over_seeds(true, k);
    out[label] = std::move(lj);
  }
  return out;
}

// For every k and every row of the judged (first) encoder: in how many seeds
// the row was evaluated, and in how many of those its verdict beat chance and
// beat chance and every other encoder (RowVerdict::beats_all).
ojson verdict_counts(const std::vector<std::vector<std::pair<std::string, Report>>>& all,
                     const std::vector<int64_t>& ks) {
  ojson out;
  out["encoder"] = all[0].front().first;
  std::vector<std::string> rows;  // every seed has the first's (seed_summary checks)
  for (const auto* kind : {&all[0].front().second.per_modality, &all[0].front().second.cross_modal})
    for (const auto& row : *kind) rows.push_back(row.name());
  for (int64_t k : ks) {
    ojson per_row = ojson::object();
    for (const auto& name : rows)
      per_row[name] = {{"evaluated", 0}, {"beats_chance", 0}, {"beats_all", 0}};
    for (const auto& columns : all)
      for (const auto& v : verdicts(columns, k)) {
        auto& counts = per_row[v.row];
        counts["evaluated"] = counts["evaluated"].get<int64_t>() + 1;
        if (v.beats_chance) counts["beats_chance"] = counts["beats_chance"].get<int64_t>() + 1;
        if (v.beats_all()) counts["beats_all"] = counts["beats_all"].get<int64_t>() + 1;
      }
    out[fmt::format("recall@{}", k)] = std::move(per_row);
  }
  return out;
}

// For every k, probe column (probe_checks) and row: in how many seeds the probe
// was checked there (evaluated, with an interval) and in how many of those its
// interval lay above chance. Rows in order of first check; empty without probes.
ojson probe_check_counts(const std::vector<std::vector<std::pair<std::string, Report>>>& all,
                         const std::vector<int64_t>& ks) {
  ojson out = ojson::object();
  for (int64_t k : ks) {
    ojson per_probe = ojson::object();
    for (const auto& columns : all)
      for (const auto& p : probe_checks(columns, k)) {
        ojson& rows = per_probe[p.probe];
        if (rows.is_null()) rows = ojson::object();
        for (const auto& row : p.rows) {
          ojson& counts = rows[row];
          if (counts.is_null()) counts = {{"checked", 0}, {"above_chance", 0}};
          counts["checked"] = counts["checked"].get<int64_t>() + 1;
          if (std::find(p.above.begin(), p.above.end(), row) != p.above.end())
            counts["above_chance"] = counts["above_chance"].get<int64_t>() + 1;
        }
      }
    if (!per_probe.empty()) out[fmt::format("recall@{}", k)] = std::move(per_probe);
  }
  return out;
}

}  // namespace

ojson seed_summary(const std::vector<ojson>& reports, const std::vector<int64_t>& seeds,
                   const std::vector<std::string>& names) {
  if (reports.empty()) throw Error("seed summary: no report");
  const size_t N = reports.size();
  if (!seeds.empty() && seeds.size() != N)
    throw Error(fmt::format("seed summary: {} seeds for {} reports", seeds.size(), N));
  if (!names.empty() && names.size() != N)
    throw Error(fmt::format("seed summary: {} names for {} reports", names.size(), N));
  auto origin = [&](size_t i) {
    return names.empty() ? fmt::format("{} of {}", i + 1, N) : names[i];
  };
  std::vector<std::vector<std::pair<std::string, Report>>> all;
  for (size_t i = 0; i < N; ++i) {
    all.push_back(reports_from_json(reports[i], origin(i)));
    if (i == 0) continue;
    if (all[i].front().second.ks != all[0].front().second.ks)
      throw Error(fmt::format("seed summary: report {} has ks [{}], report {} [{}]", origin(i),
                              fmt::join(all[i].front().second.ks, ", "), origin(0),
                              fmt::join(all[0].front().second.ks, ", ")));
    // Cosine and whitened recall are different readouts: never averaged together.
    const Report &ri = all[i].front().second, &r0 = all[0].front().second;
    if (ri.whiten_dims != r0.whiten_dims)
      throw Error(fmt::format(
          "seed summary: report {} was read out with eval.whiten_dims = {}, report {} with {} "
          "(0 = cosine); summarise reports of one readout",
          origin(i), ri.whiten_dims, origin(0), r0.whiten_dims));
    const auto mine = layout(all[i]), first = layout(all[0]);
    if (mine != first) {
      // The first entry that one of the two lacks, e.g. "noise2 per_modality xray".
      std::string diff;
      for (const auto& e : mine)
        if (diff.empty() && std::find(first.begin(), first.end(), e) == first.end())
          diff = fmt::format("'{}', which report {} lacks", e, origin(0));
      for (const auto& e : first)
        if (diff.empty() && std::find(mine.begin(), mine.end(), e) == mine.end())
          diff = fmt::format("no '{}'", e);
      if (diff.empty()) diff = "them in another order";
      throw Error(
          fmt::format("seed summary: report {} has other encoders or rows than report {}: {}",
                      origin(i), origin(0), diff));
    }
  }
  const auto& ks = all[0].front().second.ks;
  ojson j;
  j["seeds"] = N;
  if (!seeds.empty()) j["seed_values"] = seeds;
  if (!names.empty()) j["reports"] = names;
  j["ks"] = ks;
  j["encoders"] = ojson::object();
  for (size_t c = 0; c < all[0].size(); ++c) {
    ojson enc;
    for (const char* kind : {"per_modality", "cross_modal"}) {
      const bool cross = std::string(kind) == "cross_modal";
      enc[kind] = ojson::object();
      const auto& rows0 = cross ? all[0][c].second.cross_modal : all[0][c].second.per_modality;
      for (size_t r = 0; r < rows0.size(); ++r) {
        ojson row;
        for (const auto& metric : metric_names(ks)) {
          std::vector<std::optional<double>> values;
          for (const auto& columns : all) {
            const auto& rows =
                cross ? columns[c].second.cross_modal : columns[c].second.per_modality;
            const Metrics& m = rows[r].metrics;
            values.push_back(m.evaluated() ? std::optional(metric_value(m, metric)) : std::nullopt);
          }
          row[metric] = describe(values);
        }
        auto per_label = label_summary(all, c, cross, r, ks);
        if (!per_label.empty()) row["per_label"] = std::move(per_label);
        enc[kind][rows0[r].name()] = std::move(row);
      }
    }
    j["encoders"][all[0][c].first] = std::move(enc);
  }
  j["verdicts"] = verdict_counts(all, ks);
  auto probes = probe_check_counts(all, ks);
  if (!probes.empty()) j["probe_checks"] = std::move(probes);
  return j;
}

namespace {

// "0.410 ± 0.020", "0.410 ± 0.020 (2 of 3 seeds)", or "— (absent)".
std::string seed_cell(const ojson& d, size_t seeds) {
  const size_t n = d.value("evaluated", seeds);
  if (n == 0 || d.at("mean").is_null()) return " — (absent) |";
  std::string cell =
      fmt::format(" {} ± {}", num(d.at("mean").get<double>()), num(d.at("sd").get<double>()));
  if (n < seeds) cell += fmt::format(" ({} of {} seeds)", n, seeds);
  return cell + " |";
}

// "3 of 3", "1 of 2" (counts[key] of counts[of], the seeds where the row was
// evaluated or checked), "—" when there were none.
std::string count_cell(const ojson& counts, const char* key, const char* of = "evaluated") {
  const int64_t n = counts.at(of).get<int64_t>();
  return n == 0 ? " — |" : fmt::format(" {} of {} |", counts.at(key).get<int64_t>(), n);
}

std::string verdict_counts_markdown(const ojson& verdicts, const std::vector<int64_t>& ks) {
  std::string out = fmt::format(
      "\n## Verdict over seeds\n\nIn how many seeds (of those where the row was evaluated) "
      "the 95 % interval of {} lies above chance, and above chance and every other encoder:\n\n"
      "| row |",
      verdicts.at("encoder").get<std::string>());
  for (int64_t k : ks) out += fmt::format(" R@{0} > chance | R@{0} > all |", k);
  out += "\n| --- |";
  for (size_t i = 0; i < 2 * ks.size(); ++i) out += " ---: |";
  out += "\n";
  const auto& first = verdicts.at(fmt::format("recall@{}", ks.front()));
  for (const auto& [row, unused] : first.items()) {
    out += "| " + row + " |";
    for (int64_t k : ks) {
      const auto& counts = verdicts.at(fmt::format("recall@{}", k)).at(row);
      out += count_cell(counts, "beats_chance") + count_cell(counts, "beats_all");
    }
    out += "\n";
  }
  return out;
}

// The probe counts at the first k as a table: one line per row of the report
// (per-modality, then cross-modal), one column per probe, "1 of 8" or "—" where
// the probe was never checked there. Empty when the summary has no probe counts.
std::string probe_counts_markdown(const ojson& summary, int64_t k) {
  const std::string metric = fmt::format("recall@{}", k);
  if (!summary.contains("probe_checks") || !summary.at("probe_checks").contains(metric)) return "";
  const ojson& probes = summary.at("probe_checks").at(metric);
  std::string out = fmt::format(
      "\n## Shortcut probes over seeds\n\nIn how many seeds (of those where the row has an "
      "interval) each probe's {} 95 % interval lies above chance. A probe that finds nothing "
      "still lands there in about one row in 40 (the interval's upper 2.5 % tail); more often "
      "than that, the data let a shortcut through:\n\n| row |",
      metric);
  for (const auto& [probe, unused] : probes.items()) out += " " + probe + " |";
  out += "\n| --- |";
  for (size_t i = 0; i < probes.size(); ++i) out += " ---: |";
  out += "\n";
  const auto& first = summary.at("encoders").begin().value();
  for (const char* kind : {"per_modality", "cross_modal"})
    for (const auto& [row, unused] : first.at(kind).items()) {
      out += "| " + row + " |";
      for (const auto& [probe, rows] : probes.items())
        out += rows.contains(row) ? count_cell(rows.at(row), "above_chance", "checked") : " — |";
      out += "\n";
    }
  return out;
}

// recall@k per label of the per-modality rows, one line per (modality, label):
// mean ± sd per encoder over the seeds, and the mean chance level.
std::string label_summary_markdown(const ojson& summary, int64_t k) {
  const auto& encoders = summary.at("encoders");
  const auto seeds = summary.at("seeds").get<size_t>();
  const std::string metric = fmt::format("recall@{}", k);
  std::string rows;
  for (const auto& [modality, unused] : encoders.begin().value().at("per_modality").items()) {
    std::vector<std::string> labels;  // every encoder's, in order of first appearance
    for (const auto& [name, e] : encoders.items()) {
      const ojson per_label = e.at("per_modality").at(modality).value("per_label", ojson::object());
      for (const auto& [label, d] : per_label.items())
        if (std::find(labels.begin(), labels.end(), label) == labels.end()) labels.push_back(label);
    }
    for (const auto& label : labels) {
      rows += "| " + modality + " / " + label + " |";
      std::optional<double> chance;
      for (const auto& [name, e] : encoders.items()) {
        const ojson per_label =
            e.at("per_modality").at(modality).value("per_label", ojson::object());
        if (!per_label.contains(label)) {
          rows += " — (absent) |";
          continue;
        }
        rows += seed_cell(per_label.at(label).at(metric), seeds);
        const auto& c = per_label.at(label).at("chance").at(metric).at("mean");
        if (!chance && !c.is_null()) chance = c.get<double>();
      }
      rows += chance ? " " + num(*chance) + " |\n" : " — |\n";
    }
  }
  if (rows.empty()) return "";
  std::string out =
      fmt::format("\n## {} per label (mean ± sd over seeds)\n\n| modality / label |", metric);
  for (const auto& [name, e] : encoders.items()) out += " " + name + " |";
  out += " chance |\n| --- |";
  for (size_t i = 0; i <= encoders.size(); ++i) out += " ---: |";
  return out + "\n" + rows;
}

}  // namespace

std::string seed_summary_markdown(const ojson& summary) {
  const auto ks = summary.at("ks").get<std::vector<int64_t>>();
  std::vector<std::string> metrics;
  for (int64_t k : ks) metrics.push_back(fmt::format("recall@{}", k));
  metrics.push_back(fmt::format("map@{}", ks.back()));
  const auto& encoders = summary.at("encoders");
  std::string out =
      fmt::format("# Retrieval over {} seeds (mean ± sd)\n", summary.at("seeds").get<int64_t>());
  if (summary.contains("seed_values"))
    out += fmt::format("\nseeds: {}\n",
                       fmt::join(summary.at("seed_values").get<std::vector<int64_t>>(), ", "));
  if (summary.contains("verdicts")) out += verdict_counts_markdown(summary.at("verdicts"), ks);
  out += probe_counts_markdown(summary, ks.front());
  for (const auto& metric : metrics) {
    out += fmt::format("\n## {}\n\n| row |", metric);
    for (const auto& [name, e] : encoders.items()) out += " " + name + " |";
    out += "\n| --- |";
    for (size_t i = 0; i < encoders.size(); ++i) out += " ---: |";
    out += "\n";
    const auto& first = encoders.begin().value();
    for (const char* kind : {"per_modality", "cross_modal"}) {
      for (const auto& [row, unused] : first.at(kind).items()) {
        out += "| " + row + " |";
        for (const auto& [name, e] : encoders.items()) {
          const auto& d = e.at(kind).at(row).at(metric);
          out += seed_cell(d, summary.at("seeds").get<size_t>());
        }
        out += "\n";
      }
    }
  }
  return out + label_summary_markdown(summary, ks.front());
}

}  // namespace m3ret::eval
