#include "eval/report.h"

#include <algorithm>
#include <exception>

#include <fmt/format.h>

#include "core/csv.h"
#include "core/error.h"
#include "core/fs.h"
#include "eval/stats.h"

namespace m3ret::eval {
namespace {

using ojson = nlohmann::ordered_json;

const char* kDash = "—";

std::string map_key(const std::vector<int64_t>& ks) { return fmt::format("map@{}", ks.back()); }

std::string rkey(int64_t k) { return fmt::format("recall@{}", k); }
std::string pkey(int64_t k) { return fmt::format("precision@{}", k); }

// An absent row (no evaluated query) has null metrics and its reason under
// "absent", so that no reader takes its zeros for figures.
ojson metrics_json(const Metrics& m, const std::vector<int64_t>& ks) {
  ojson j;
  j["queries"] = m.queries;
  j["skipped_no_label"] = m.skipped_no_label;
  j["skipped_no_relevant"] = m.skipped_no_relevant;
  j["skipped_no_candidate"] = m.skipped_no_candidate;
  j["gallery"] = m.gallery;
  const bool ok = m.evaluated();
  auto value = [ok](double v) { return ok ? ojson(v) : ojson(nullptr); };
  if (!ok) j["absent"] = absent_reason(m);
  for (int64_t k : ks) j[rkey(k)] = value(m.recall.at(k));
  for (int64_t k : ks) j[pkey(k)] = value(m.precision.at(k));
  j[map_key(ks)] = value(m.map_at_k);
  if (!m.ci_recall.empty() && ok) {
    ojson& ci = j["ci95"];
    for (int64_t k : ks) ci[rkey(k)] = {m.ci_recall.at(k).lo, m.ci_recall.at(k).hi};
    for (int64_t k : ks) ci[pkey(k)] = {m.ci_precision.at(k).lo, m.ci_precision.at(k).hi};
  }
  ojson& chance = j["chance"];
  auto chance_of = [&](const std::map<int64_t, double>& c, int64_t k) {
    return value(c.count(k) ? c.at(k) : 0.0);
  };
  for (int64_t k : ks) chance[rkey(k)] = chance_of(m.chance_recall, k);
  for (int64_t k : ks) chance[pkey(k)] = chance_of(m.chance_precision, k);
  if (ok && !m.per_label.empty()) {
    ojson& labels = j["per_label"];
    for (const auto& [name, lm] : m.per_label) {
      ojson l;
      l["queries"] = lm.queries;
      for (int64_t k : ks) l[rkey(k)] = lm.recall.at(k);
      if (!lm.ci_recall.empty())
        for (int64_t k : ks) l["ci95"][rkey(k)] = {lm.ci_recall.at(k).lo, lm.ci_recall.at(k).hi};
      for (int64_t k : ks) l["chance"][rkey(k)] = lm.chance_recall.at(k);
      labels[name] = std::move(l);
    }
  }
  return j;
}

// A metric value; null (an absent row) reads as 0 with queries == 0.
double metric_from_json(const ojson& j, const std::string& key) {
  const ojson& v = j.at(key);
  return v.is_null() ? 0.0 : v.get<double>();
}

Interval interval_from_json(const ojson& j) {
  if (!j.is_array() || j.size() != 2)
    throw Error(fmt::format("an interval is not [lo, hi]: {}", j.dump()));
  return {j[0].get<double>(), j[1].get<double>()};
}

// ci95 and chance are optional (version 1: none, 0).
Metrics metrics_from_json(const ojson& j, const std::vector<int64_t>& ks) {
  Metrics m;
  m.queries = j.at("queries").get<int64_t>();
  m.skipped_no_label = j.at("skipped_no_label").get<int64_t>();
  m.skipped_no_relevant = j.at("skipped_no_relevant").get<int64_t>();
  m.skipped_no_candidate = j.value("skipped_no_candidate", int64_t{0});
  m.gallery = j.at("gallery").get<int64_t>();
  if (m.queries > 0 && j.contains("absent"))
    throw Error(fmt::format("{} queries but marked absent", m.queries));
  for (int64_t k : ks) m.recall[k] = metric_from_json(j, rkey(k));
  for (int64_t k : ks) m.precision[k] = metric_from_json(j, pkey(k));
  m.map_k = ks.back();
  m.map_at_k = metric_from_json(j, map_key(ks));
  if (j.contains("ci95")) {
    for (int64_t k : ks) m.ci_recall[k] = interval_from_json(j.at("ci95").at(rkey(k)));
    for (int64_t k : ks) m.ci_precision[k] = interval_from_json(j.at("ci95").at(pkey(k)));
  }
  const ojson chance = j.value("chance", ojson::object());
  auto chance_at = [&](const std::string& key) {
    return chance.contains(key) ? metric_from_json(chance, key) : 0.0;
  };
  for (int64_t k : ks) m.chance_recall[k] = chance_at(rkey(k));
  for (int64_t k : ks) m.chance_precision[k] = chance_at(pkey(k));
  // per_label is optional (reports before it have none).
  const ojson per_label = j.value("per_label", ojson::object());
  for (const auto& [name, l] : per_label.items()) {
    try {
      LabelMetrics& lm = m.per_label[name];
      lm.queries = l.at("queries").get<int64_t>();
      for (int64_t k : ks) lm.recall[k] = l.at(rkey(k)).get<double>();
      for (int64_t k : ks) lm.chance_recall[k] = l.at("chance").at(rkey(k)).get<double>();
      if (l.contains("ci95"))
        for (int64_t k : ks) lm.ci_recall[k] = interval_from_json(l.at("ci95").at(rkey(k)));
    } catch (const std::exception& ex) {
      throw Error(fmt::format("per_label \"{}\": {}", name, ex.what()));
    }
  }
  return m;
}

std::string num(double v) { return fmt::format("{:.3f}", v); }

// "0.410 [0.330–0.490]", or "0.410" without an interval.
std::string with_ci(double v, const std::map<int64_t, Interval>& ci, int64_t k) {
  auto it = ci.find(k);
  return it == ci.end() ? num(v)
                        : fmt::format("{} [{}–{}]", num(v), num(it->second.lo), num(it->second.hi));
}

// A table of text cells rendered as Markdown or aligned text.
struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;

  std::string markdown() const {
    auto line = [](const std::vector<std::string>& cells) {
      std::string s = "|";
      for (const auto& c : cells) s += " " + c + " |";
      return s + "\n";
    };
    std::string out = line(header);
    std::string sep = "|";
    for (size_t i = 0; i < header.size(); ++i) sep += i == 0 ? " --- |" : " ---: |";
    out += sep + "\n";
    for (const auto& r : rows) out += line(r);
    return out;
  }

  std::string text() const {
    auto width = [](const std::string& s) {  // code points, so that "—" counts as one
      size_t n = 0;
      for (unsigned char c : s) n += (c & 0xC0) != 0x80;
      return n;
    };
    std::vector<size_t> w(header.size(), 0);
    for (size_t i = 0; i < header.size(); ++i) w[i] = width(header[i]);
    for (const auto& r : rows)
      for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], width(r[i]));
    auto line = [&](const std::vector<std::string>& cells) {
      std::string s;
      for (size_t i = 0; i < cells.size(); ++i) {
        std::string pad(w[i] - width(cells[i]), ' ');
        s += i == 0 ? cells[i] + pad : "  " + pad + cells[i];
      }
      while (!s.empty() && s.back() == ' ') s.pop_back();
      return s + "\n";
    };
    std::string out = line(header);
    size_t total = 0;
    for (size_t i = 0; i < w.size(); ++i) total += w[i] + (i ? 2 : 0);
    out += std::string(total, '-') + "\n";
    for (const auto& r : rows) out += line(r);
    return out;
  }
};

// The row names of all columns, in order of first appearance.
std::vector<std::string> row_names(const std::vector<std::pair<std::string, Report>>& columns,
                                   bool cross) {
  std::vector<std::string> names;
  for (const auto& [label, report] : columns)
    for (const auto& r : cross ? report.cross_modal : report.per_modality)
      if (std::find(names.begin(), names.end(), r.name()) == names.end()) names.push_back(r.name());
  return names;
}

std::string display_name(const std::string& name, const std::set<std::string>& unseen) {
  auto arrow = name.find("->");
  if (arrow == std::string::npos) return unseen.count(name) ? name + " (unseen)" : name;
  return display_name(name.substr(0, arrow), unseen) + " → " +
         display_name(name.substr(arrow + 2), unseen);
}

struct Section {
  std::string title;
  Table table;
};

// The chance recall@k of row `name`: the first column's with queries ("—" if none).
std::string chance_cell(const std::vector<std::pair<std::string, Report>>& columns,
                        const std::string& name, int64_t k) {
  for (const auto& [label, report] : columns) {
    const ReportRow* row = report.find(name);
    if (row && row->metrics.queries > 0 && row->metrics.chance_recall.count(k))
      return num(row->metrics.chance_recall.at(k));
  }
  return kDash;
}

// recall@k of row `name` in `report` with its interval, "—" when absent.
std::string recall_cell(const Report& report, const std::string& name, int64_t k) {
  const ReportRow* row = report.find(name);
  if (!row || row->metrics.queries == 0) return kDash;
  return with_ci(row->metrics.recall.at(k), row->metrics.ci_recall, k);
}

void check_same_ks(const std::vector<std::pair<std::string, Report>>& columns) {
  M3RET_CHECK(!columns.empty(), "comparison_table needs at least one report");
  const auto& ks = columns.front().second.ks;
  for (const auto& [label, report] : columns)
    if (report.ks != ks)
      throw Error(fmt::format("comparison table: report '{}' uses ks [{}], '{}' uses [{}]", label,
                              fmt::join(report.ks, ", "), columns.front().first,
                              fmt::join(ks, ", ")));
}

std::vector<std::string> header(const std::vector<std::pair<std::string, Report>>& columns,
                                const std::string& first) {
  std::vector<std::string> h = {first};
  for (const auto& [label, report] : columns) h.push_back(label);
  h.push_back("chance");
  return h;
}

// One modality: rows recall@k (with intervals) and map@K, columns the encoders and chance.
Section modality_section(const std::vector<std::pair<std::string, Report>>& columns,
                         const std::string& name, const std::set<std::string>& unseen) {
  const auto& ks = columns.front().second.ks;
  Section s;
  std::vector<std::string> counts;
  for (const auto& [label, report] : columns) {
    const ReportRow* row = report.find(name);
    counts.push_back(row ? std::to_string(row->metrics.queries) : kDash);
  }
  bool same = std::all_of(counts.begin(), counts.end(), [&](auto& c) { return c == counts[0]; });
  std::string n = same ? counts[0] : fmt::format("{}", fmt::join(counts, " / "));
  s.title = fmt::format("{} ({} queries)", display_name(name, unseen), n);
  s.table.header = header(columns, "metric");
  for (int64_t k : ks) {
    std::vector<std::string> cells = {rkey(k)};
    for (const auto& [label, report] : columns) cells.push_back(recall_cell(report, name, k));
    cells.push_back(chance_cell(columns, name, k));
    s.table.rows.push_back(cells);
  }
  std::vector<std::string> cells = {map_key(ks)};
  for (const auto& [label, report] : columns) {
    const ReportRow* row = report.find(name);
    cells.push_back(row && row->metrics.queries > 0 ? num(row->metrics.map_at_k) : kDash);
  }
  cells.push_back(kDash);
  s.table.rows.push_back(cells);
  return s;
}

// The sections of a comparison: one per modality, then one cross-modal per k.
std::vector<Section> comparison_sections(const std::vector<std::pair<std::string, Report>>& columns,
                                         const std::set<std::string>& unseen) {
  check_same_ks(columns);
  std::vector<Section> sections;
  for (const auto& name : row_names(columns, false))
    sections.push_back(modality_section(columns, name, unseen));
  const auto pairs = row_names(columns, true);
  if (pairs.empty()) return sections;
  for (int64_t k : columns.front().second.ks) {
    Section s;
    s.title = fmt::format("cross-modal {}", rkey(k));
    s.table.header = header(columns, "query → gallery");
    for (const auto& name : pairs) {
      std::vector<std::string> cells = {display_name(name, unseen)};
      for (const auto& [label, report] : columns) cells.push_back(recall_cell(report, name, k));
      cells.push_back(chance_cell(columns, name, k));
      s.table.rows.push_back(cells);
    }
    sections.push_back(std::move(s));
  }
  return sections;
}

Table report_table(const std::vector<ReportRow>& rows, const std::vector<int64_t>& ks,
                   const std::string& first, const std::set<std::string>& unseen) {
  Table t;
  t.header = {first, "queries"};
  for (int64_t k : ks) t.header.push_back(rkey(k));
  for (int64_t k : ks) t.header.push_back(pkey(k));
  t.header.push_back(map_key(ks));
  for (int64_t k : ks) t.header.push_back(fmt::format("chance R@{}", k));
  for (const auto& r : rows) {
    const Metrics& m = r.metrics;
    std::vector<std::string> cells = {display_name(r.name(), unseen), std::to_string(m.queries)};
    const bool any = m.queries > 0;
    for (int64_t k : ks) cells.push_back(any ? with_ci(m.recall.at(k), m.ci_recall, k) : kDash);
    for (int64_t k : ks)
      cells.push_back(any ? with_ci(m.precision.at(k), m.ci_precision, k) : kDash);
    cells.push_back(any ? num(m.map_at_k) : kDash);
    for (int64_t k : ks)
      cells.push_back(any && m.chance_recall.count(k) ? num(m.chance_recall.at(k)) : kDash);
    t.rows.push_back(cells);
  }
  return t;
}

// "- trained on: a, b; unseen (evaluated, never trained on): c\n", from the
// encoder's report.
std::string training_line(const Report& r) {
  if (r.source.train_modalities.empty())
    return "- trained on: unknown (the embeddings do not record train.modalities), so no "
           "modality is marked unseen\n";
  return fmt::format(
      "- trained on: {}; unseen (evaluated, never trained on): {}\n",
      fmt::join(r.source.train_modalities, ", "),
      r.unseen.empty() ? std::string("none") : fmt::format("{}", fmt::join(r.unseen, ", ")));
}

}  // namespace

std::string whitening_line(const Report& r) {
  if (r.whiten_dims <= 0) return "";
  std::vector<std::string> parts, pooled;
  int64_t pooled_rows = 0;
  std::string pooled_dims;
  // " (31 dimensions: all they span)" for a fit that kept fewer than asked.
  auto fewer = [&](const WhiteningFit& fit) {
    return fit.dims < r.whiten_dims ? fmt::format(" ({} dimensions: all they span)", fit.dims)
                                    : std::string();
  };
  auto note = [&](const std::string& row, const std::string& name) {
    const auto it = r.whitening.find(row);
    if (it == r.whitening.end()) return;
    if (it->second.fitted_on == "all") {
      pooled.push_back(name);
      pooled_rows = it->second.rows;
      pooled_dims = fewer(it->second);
    } else {
      parts.push_back(
          fmt::format("{} on its own {} rows{}", name, it->second.rows, fewer(it->second)));
    }
  };
  for (const auto& row : r.per_modality) note(row.name(), row.name());
  note("cross_modal", "cross-modal rows");
  if (!pooled.empty())
    parts.push_back(fmt::format("{} on all modalities' {} rows pooled{}", fmt::join(pooled, ", "),
                                pooled_rows, pooled_dims));
  return fmt::format(
      "- readout: PCA whitening to {} dimensions, then cosine, fitted without labels on split "
      "'{}' (each encoder on its own embeddings): {}\n",
      r.whiten_dims, r.whiten_split.empty() ? "all" : r.whiten_split, fmt::join(parts, "; "));
}

namespace {

// One line per absent row of the columns: "- trained mri: no evaluable query: ...".
std::vector<std::string> absent_notes(const std::vector<std::pair<std::string, Report>>& columns) {
  std::vector<std::string> notes;
  for (const auto& [label, report] : columns)
    for (const auto* rows : {&report.per_modality, &report.cross_modal})
      for (const auto& r : *rows)
        if (!r.metrics.evaluated())
          notes.push_back(fmt::format("{}{} — absent: {}", columns.size() > 1 ? label + " " : "",
                                      r.name(), absent_reason(r.metrics)));
  return notes;
}

// "\n## Absent rows (no figure)\n\n- ...\n", or "" when every row was evaluated.
std::string absent_section(const std::vector<std::pair<std::string, Report>>& columns,
                           const std::string& heading) {
  const auto notes = absent_notes(columns);
  if (notes.empty()) return "";
  std::string out = "\n" + heading + "\n\n";
  for (const auto& n : notes) out += "- " + n + "\n";
  return out;
}

// "- warning (trained): all 40 embeddings are ...\n" for every warning of every column.
std::string warning_lines(const std::vector<std::pair<std::string, Report>>& columns) {
  std::string out;
  for (const auto& [label, report] : columns)
    for (const auto& w : report.warnings)
      out += fmt::format("- **warning**{}: {}\n", columns.size() > 1 ? " (" + label + ")" : "", w);
  return out;
}

std::set<std::string> unseen_set(const Report& r) { return {r.unseen.begin(), r.unseen.end()}; }

// recall@k per label of the per-modality rows: one table row per (modality,
// label) with its queries, a column per encoder (with intervals) and chance;
// "" when no encoder has per-label figures (reports written before them).
std::string per_label_section(const std::vector<std::pair<std::string, Report>>& columns, int64_t k,
                              const std::set<std::string>& unseen) {
  Table t;
  t.header = header(columns, "modality / label");
  for (const auto& name : row_names(columns, false)) {
    std::vector<std::string> labels;  // every encoder's, in order of first appearance
    for (const auto& [encoder, report] : columns)
      if (const ReportRow* row = report.find(name))
        for (const auto& [label, lm] : row->metrics.per_label)
          if (std::find(labels.begin(), labels.end(), label) == labels.end())
            labels.push_back(label);
    for (const auto& label : labels) {
      const LabelMetrics* first = nullptr;
      std::vector<std::string> cells = {""};
      for (const auto& [encoder, report] : columns) {
        const ReportRow* row = report.find(name);
        if (!row || !row->metrics.per_label.count(label)) {
          cells.push_back(kDash);
          continue;
        }
        const LabelMetrics& lm = row->metrics.per_label.at(label);
        if (!first) first = &lm;
        cells.push_back(with_ci(lm.recall.at(k), lm.ci_recall, k));
      }
      cells[0] = fmt::format("{} / {} ({})", display_name(name, unseen), label, first->queries);
      cells.push_back(num(first->chance_recall.at(k)));
      t.rows.push_back(std::move(cells));
    }
  }
  if (t.rows.empty()) return "";
  const bool exact = columns.front().second.relevance == "same-labels";
  return fmt::format("\n## {} per label ({})\n\n{}", rkey(k),
                     exact ? "the queries that carry the label, relevant: the same label set"
                           : "the queries that carry the label, relevant: a sample that carries it",
                     t.markdown());
}

}  // namespace

std::set<std::string> unseen_modalities(
    const std::vector<std::pair<std::string, Report>>& columns) {
  return columns.empty() ? std::set<std::string>{} : unseen_set(columns.front().second);
}

namespace {

ojson embeddings_json(const EmbeddingAttrs& a) {
  ojson e;
  e["checkpoint"] = a.checkpoint;
  e["step"] = a.step;
  e["random_init"] = a.random_init;
  e["encoder"] = a.encoder;
  e["weights"] = a.weights;
  e["pooling"] = a.pooling;
  e["train_modalities"] = a.train_modalities;
  return e;
}

// encoder, weights, pooling and train_modalities are optional (older reports: unknown).
EmbeddingAttrs embeddings_from_json(const ojson& e) {
  EmbeddingAttrs a;
  a.checkpoint = e.at("checkpoint").get<std::string>();
  a.step = e.at("step").get<int64_t>();
  a.random_init = e.at("random_init").get<bool>();
  a.encoder = e.value("encoder", std::string());
  a.weights = e.value("weights", std::string());
  a.pooling = e.value("pooling", std::string());
  if (e.contains("train_modalities"))
    a.train_modalities = e.at("train_modalities").get<std::vector<std::string>>();
  return a;
}

// One encoder's part of the document.
ojson encoder_json(const Report& r) {
  ojson j;
  j["embeddings"] = embeddings_json(r.source);
  j["unseen_modalities"] = r.unseen;
  j["warnings"] = r.warnings;
  if (!r.whitening.empty()) {
    j["whitening"] = ojson::object();
    for (const auto& [row, fit] : r.whitening)
      j["whitening"][row] = {{"fitted_on", fit.fitted_on}, {"rows", fit.rows}, {"dims", fit.dims}};
  }
  j["per_modality"] = ojson::object();
  for (const auto& row : r.per_modality)
    j["per_modality"][row.name()] = metrics_json(row.metrics, r.ks);
  j["cross_modal"] = ojson::object();
  for (const auto& row : r.cross_modal)
    j["cross_modal"][row.name()] = metrics_json(row.metrics, r.ks);
  return j;
}

// Reads one encoder's part (embeddings, unseen_modalities, per_modality,
// cross_modal) into `r`, whose ks are set.
void encoder_from_json(const ojson& j, Report& r) {
  r.source = embeddings_from_json(j.at("embeddings"));
  if (j.contains("unseen_modalities"))  // optional: older reports (none unseen)
    r.unseen = j.at("unseen_modalities").get<std::vector<std::string>>();
  if (j.contains("warnings"))  // optional: older reports (none)
    r.warnings = j.at("warnings").get<std::vector<std::string>>();
  if (j.contains("whitening"))  // only with eval.whiten_dims > 0
    for (const auto& [row, fit] : j.at("whitening").items())
      r.whitening[row] = {fit.at("fitted_on").get<std::string>(), fit.at("rows").get<int64_t>(),
                          fit.at("dims").get<int64_t>()};
  auto metrics = [&](const std::string& kind, const std::string& name, const ojson& m) {
    try {
      return metrics_from_json(m, r.ks);
    } catch (const std::exception& ex) {
      throw Error(fmt::format("{} '{}': {}", kind, name, ex.what()));
    }
  };
  for (const auto& [name, m] : j.at("per_modality").items())
    r.per_modality.push_back({name, name, metrics("per_modality", name, m)});
  for (const auto& [name, m] : j.at("cross_modal").items()) {
    auto arrow = name.find("->");
    if (arrow == std::string::npos)
      throw Error(fmt::format("cross_modal key '{}' is not of the form 'a->b'", name));
    r.cross_modal.push_back(
        {name.substr(0, arrow), name.substr(arrow + 2), metrics("cross_modal", name, m)});
  }
}

// The fields every encoder shares (top level); throws on a wrong format or version.
Report shared_from_json(const ojson& j) {
  const std::string format = j.at("format").get<std::string>();
  if (format != kReportFormat)
    throw Error(fmt::format("format is '{}', expected '{}'", format, kReportFormat));
  const int64_t version = j.at("format_version").get<int64_t>();
  if (version != 1 && version != kReportFormatVersion)
    throw Error(fmt::format("format_version is {}, this build reads versions 1 and {}", version,
                            kReportFormatVersion));
  Report r;
  r.ks = j.at("ks").get<std::vector<int64_t>>();
  if (r.ks.empty()) throw Error("ks is empty");
  r.split = j.at("split").get<std::string>();
  r.relevance = j.at("relevance").get<std::string>();
  r.samples = j.at("samples").get<int64_t>();
  r.bootstrap = j.value("bootstrap", int64_t{0});
  r.bootstrap_seed = j.value("bootstrap_seed", int64_t{0});
  r.label_map = j.value("label_map", std::string());
  if (j.contains("exclude_labels"))
    r.exclude_labels = j.at("exclude_labels").get<std::vector<std::string>>();
  r.whiten_dims = j.value("whiten_dims", int64_t{0});  // absent in older reports: none
  r.whiten_split = j.value("whiten_split", std::string());
  r.whiten_fit = j.value("whiten_fit", std::string());
  return r;
}

// Version 1: the encoder at top level, the others under "baselines".
std::vector<std::pair<std::string, Report>> columns_v1(const ojson& j, const Report& shared) {
  std::vector<std::pair<std::string, Report>> columns;
  columns.emplace_back(j.value("encoder", std::string("encoder")), shared);
  encoder_from_json(j, columns.back().second);
  const ojson baselines = j.value("baselines", ojson::object());
  for (const auto& [name, b] : baselines.items()) {
    columns.emplace_back(name, shared);
    try {
      encoder_from_json(b, columns.back().second);
    } catch (const std::exception& ex) {
      throw Error(fmt::format("baseline '{}': {}", name, ex.what()));
    }
  }
  return columns;
}

}  // namespace

ojson to_json(const Report& report) { return to_json({{"encoder", report}}); }

Report report_from_json(const ojson& j, const std::string& origin) {
  return reports_from_json(j, origin).front().second;
}

ojson to_json(const std::vector<std::pair<std::string, Report>>& columns, int64_t verdict_k) {
  M3RET_CHECK(!columns.empty(), "to_json needs at least one report");
  const Report& first = columns.front().second;
  ojson j;
  j["format"] = kReportFormat;
  j["format_version"] = kReportFormatVersion;
  j["split"] = first.split;
  j["relevance"] = first.relevance;
  j["ks"] = first.ks;
  j["samples"] = first.samples;
  j["bootstrap"] = first.bootstrap;
  j["bootstrap_seed"] = first.bootstrap_seed;
  j["label_map"] = first.label_map;
  j["exclude_labels"] = first.exclude_labels;
  j["whiten_dims"] = first.whiten_dims;
  if (first.whiten_dims > 0) {
    j["whiten_split"] = first.whiten_split;
    j["whiten_fit"] = first.whiten_fit;
  }
  j["unseen_modalities"] = first.unseen;
  j["encoders"] = ojson::object();
  for (const auto& [name, report] : columns) {
    if (j["encoders"].contains(name))
      throw Error(fmt::format("retrieval report: two encoders are named '{}'", name));
    j["encoders"][name] = encoder_json(report);
  }
  j["verdict"] = verdict_json(columns, verdict_k ? verdict_k : first.ks.front());
  return j;
}

std::vector<std::pair<std::string, Report>> reports_from_json(const ojson& j,
                                                              const std::string& origin) {
  try {
    const Report shared = shared_from_json(j);
    if (j.at("format_version").get<int64_t>() == 1) return columns_v1(j, shared);
    std::vector<std::pair<std::string, Report>> columns;
    for (const auto& [name, e] : j.at("encoders").items()) {
      columns.emplace_back(name, shared);
      try {
        encoder_from_json(e, columns.back().second);
      } catch (const std::exception& ex) {
        throw Error(fmt::format("encoder '{}': {}", name, ex.what()));
      }
    }
    if (columns.empty()) throw Error("no encoder in \"encoders\"");
    return columns;
  } catch (const std::exception& ex) {
    throw Error(fmt::format("retrieval report {}: {}", origin, ex.what()));
  }
}

namespace {

std::string csv_header(const std::vector<int64_t>& ks) {
  std::string out = "encoder,kind,query_modality,gallery_modality,queries,gallery";
  for (int64_t k : ks) out += "," + rkey(k);
  for (int64_t k : ks) out += "," + pkey(k);
  out += "," + map_key(ks);
  for (int64_t k : ks) out += ",chance_" + rkey(k);
  for (int64_t k : ks) out += ",chance_" + pkey(k);
  for (int64_t k : ks) out += fmt::format(",{0}_lo,{0}_hi", rkey(k));
  for (int64_t k : ks) out += fmt::format(",{0}_lo,{0}_hi", pkey(k));
  return out + ",absent\n";
}

// An absent row: empty metric cells and its reason in the last column.
std::string csv_row(const std::string& encoder, const char* kind, const ReportRow& r,
                    const std::vector<int64_t>& ks) {
  const Metrics& m = r.metrics;
  const bool ok = m.evaluated();
  std::string out = fmt::format("{},{},{},{},{},{}", csv::quote(encoder), kind, r.query_modality,
                                r.gallery_modality, m.queries, m.gallery);
  auto cell = [ok](double v) { return ok ? fmt::format(",{:.6f}", v) : std::string(","); };
  auto value = [&](const std::map<int64_t, double>& v, int64_t k) {
    auto it = v.find(k);
    return cell(it == v.end() ? 0.0 : it->second);
  };
  auto interval = [ok](const std::map<int64_t, Interval>& v, int64_t k) {
    auto it = v.find(k);
    return it == v.end() || !ok ? std::string(",,")
                                : fmt::format(",{:.6f},{:.6f}", it->second.lo, it->second.hi);
  };
  for (int64_t k : ks) out += value(m.recall, k);
  for (int64_t k : ks) out += value(m.precision, k);
  out += cell(m.map_at_k);
  for (int64_t k : ks) out += value(m.chance_recall, k);
  for (int64_t k : ks) out += value(m.chance_precision, k);
  for (int64_t k : ks) out += interval(m.ci_recall, k);
  for (int64_t k : ks) out += interval(m.ci_precision, k);
  return out + "," + csv::quote(absent_reason(m)) + "\n";
}

}  // namespace

std::string to_csv(const std::vector<std::pair<std::string, Report>>& columns) {
  M3RET_CHECK(!columns.empty(), "to_csv needs at least one report");
  const auto& ks = columns.front().second.ks;
  std::string out = csv_header(ks);
  for (const auto& [name, report] : columns) {
    if (report.ks != ks)
      throw Error(fmt::format("CSV report: '{}' uses other ks than '{}'", name, columns[0].first));
    for (const auto& r : report.per_modality) out += csv_row(name, "per_modality", r, ks);
    for (const auto& r : report.cross_modal) out += csv_row(name, "cross_modal", r, ks);
  }
  return out;
}

void write_reports(const std::filesystem::path& path,
                   const std::vector<std::pair<std::string, Report>>& columns, int64_t verdict_k) {
  M3RET_CHECK(!columns.empty(), "write_reports needs at least one report");
  auto twin = [&](const char* ext) {
    auto p = path;
    p.replace_extension(ext);
    return p;
  };
  const Report& first = columns.front().second;
  std::string md = columns.size() == 1 ? to_markdown(first)
                                       : "# Retrieval report\n\n" + training_line(first) +
                                             whitening_line(first) + warning_lines(columns) + "\n" +
                                             comparison_table(columns, unseen_modalities(columns));
  const int64_t k = verdict_k ? verdict_k : first.ks.front();
  md += "\n## " + verdict_heading(columns, k) + "\n\n";
  for (const auto& line : verdict_lines(columns, k)) md += "- " + line + "\n";
  const auto probes = probe_lines(columns, k);
  if (!probes.empty()) {
    md += fmt::format("\n## {}\n\n", probe_heading(k));
    for (const auto& line : probes) md += "- " + line + "\n";
  }
  md += per_label_section(columns, k, unseen_modalities(columns));
  fs::write_atomic(path, to_json(columns, k).dump(2) + "\n");
  fs::write_atomic(twin(".md"), md);
  fs::write_atomic(twin(".csv"), to_csv(columns));
}

void write_report(const std::filesystem::path& path, const Report& report) {
  write_reports(path, {{"encoder", report}});
}

ojson read_report_json(const std::filesystem::path& path) {
  const std::string text = fs::read_file(path);
  try {
    return ojson::parse(text);
  } catch (const nlohmann::json::exception& ex) {
    throw Error(fmt::format("retrieval report {}: not valid JSON: {}", path.string(), ex.what()));
  }
}

Report read_report(const std::filesystem::path& path) {
  return report_from_json(read_report_json(path), path.string());
}

std::vector<std::pair<std::string, Report>> read_reports(const std::filesystem::path& path) {
  return reports_from_json(read_report_json(path), path.string());
}

std::string to_markdown(const Report& report) {
  std::string out = "# Retrieval report\n\n";
  out += fmt::format(
      "- embeddings: {}{} (step {})\n",
      report.source.checkpoint.empty() ? "unknown checkpoint" : report.source.checkpoint,
      report.source.random_init ? ", random init" : "", report.source.step);
  out += fmt::format("- split: {}; samples: {}; relevance: {}\n",
                     report.split.empty() ? "all" : report.split, report.samples, report.relevance);
  out +=
      training_line(report) + whitening_line(report) + warning_lines({{"encoder", report}}) + "\n";
  out += "## Per modality (leave-one-out, same group excluded)\n\n";
  out += report_table(report.per_modality, report.ks, "modality", unseen_set(report)).markdown();
  if (!report.cross_modal.empty()) {
    out += "\n## Cross-modal\n\n";
    out += report_table(report.cross_modal, report.ks, "query → gallery", unseen_set(report))
               .markdown();
  }
  return out + absent_section({{"encoder", report}}, "## Absent rows (no figure)");
}

std::string comparison_table(const std::vector<std::pair<std::string, Report>>& columns,
                             const std::set<std::string>& unseen) {
  std::string out;
  for (const auto& s : comparison_sections(columns, unseen)) {
    if (!out.empty()) out += "\n";
    out += "### " + s.title + "\n\n" + s.table.markdown();
  }
  return out + absent_section(columns, "### Absent rows (no figure)");
}

std::string comparison_text(const std::vector<std::pair<std::string, Report>>& columns,
                            const std::set<std::string>& unseen) {
  std::string out;
  for (const auto& s : comparison_sections(columns, unseen)) {
    if (!out.empty()) out += "\n";
    out += "== " + s.title + " ==\n" + s.table.text();
  }
  return out + absent_section(columns, "== absent rows (no figure) ==");
}

}  // namespace m3ret::eval
