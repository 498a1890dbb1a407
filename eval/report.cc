#include "eval/report.h"

#include <algorithm>
#include <exception>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"

namespace m3ret::eval {
namespace {

using ojson = nlohmann::ordered_json;

const char* kDash = "—";

std::string map_key(const std::vector<int64_t>& ks) { return fmt::format("map@{}", ks.back()); }

ojson metrics_json(const Metrics& m, const std::vector<int64_t>& ks) {
  ojson j;
  j["queries"] = m.queries;
  j["skipped_no_label"] = m.skipped_no_label;
  j["skipped_no_relevant"] = m.skipped_no_relevant;
  j["gallery"] = m.gallery;
  for (int64_t k : ks) j[fmt::format("recall@{}", k)] = m.recall.at(k);
  for (int64_t k : ks) j[fmt::format("precision@{}", k)] = m.precision.at(k);
  j[map_key(ks)] = m.map_at_k;
  return j;
}

Metrics metrics_from_json(const ojson& j, const std::vector<int64_t>& ks) {
  Metrics m;
  m.queries = j.at("queries").get<int64_t>();
  m.skipped_no_label = j.at("skipped_no_label").get<int64_t>();
  m.skipped_no_relevant = j.at("skipped_no_relevant").get<int64_t>();
  m.gallery = j.at("gallery").get<int64_t>();
  for (int64_t k : ks) m.recall[k] = j.at(fmt::format("recall@{}", k)).get<double>();
  for (int64_t k : ks) m.precision[k] = j.at(fmt::format("precision@{}", k)).get<double>();
  m.map_k = ks.back();
  m.map_at_k = j.at(map_key(ks)).get<double>();
  return m;
}

std::string num(double v) { return fmt::format("{:.3f}", v); }

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

// The sections of a comparison: one per modality, then the cross-modal one.
std::vector<Section> comparison_sections(
    const std::vector<std::pair<std::string, Report>>& columns,
    const std::set<std::string>& unseen) {
  M3RET_CHECK(!columns.empty(), "comparison_table needs at least one report");
  const auto& ks = columns.front().second.ks;
  for (const auto& [label, report] : columns)
    if (report.ks != ks)
      throw Error(fmt::format("comparison table: report '{}' uses ks [{}], '{}' uses [{}]", label,
                              fmt::join(report.ks, ", "), columns.front().first,
                              fmt::join(ks, ", ")));
  std::vector<Section> sections;
  for (const auto& name : row_names(columns, false)) {
    Section s;
    std::vector<std::string> counts;
    for (const auto& [label, report] : columns) {
      const ReportRow* row = report.find(name);
      counts.push_back(row ? std::to_string(row->metrics.queries) : kDash);
    }
    bool same = std::all_of(counts.begin(), counts.end(), [&](auto& c) { return c == counts[0]; });
    std::string n = same ? counts[0] : fmt::format("{}", fmt::join(counts, " / "));
    s.title = fmt::format("{} ({} queries)", display_name(name, unseen), n);
    s.table.header = {"metric"};
    for (const auto& [label, report] : columns) s.table.header.push_back(label);
    auto add = [&](const std::string& metric, auto value) {
      std::vector<std::string> cells = {metric};
      for (const auto& [label, report] : columns) {
        const ReportRow* row = report.find(name);
        cells.push_back(row && row->metrics.queries > 0 ? num(value(row->metrics)) : kDash);
      }
      s.table.rows.push_back(cells);
    };
    for (int64_t k : ks) add(fmt::format("recall@{}", k), [k](const Metrics& m) { return m.recall.at(k); });
    add(map_key(ks), [](const Metrics& m) { return m.map_at_k; });
    sections.push_back(std::move(s));
  }
  auto pairs = row_names(columns, true);
  if (!pairs.empty()) {
    Section s;
    std::vector<std::string> ks_names;
    for (int64_t k : ks) ks_names.push_back(fmt::format("R@{}", k));
    s.title = fmt::format("cross-modal ({})", fmt::join(ks_names, " / "));
    s.table.header = {"query → gallery"};
    for (const auto& [label, report] : columns) s.table.header.push_back(label);
    for (const auto& name : pairs) {
      std::vector<std::string> cells = {display_name(name, unseen)};
      for (const auto& [label, report] : columns) {
        const ReportRow* row = report.find(name);
        if (!row || row->metrics.queries == 0) {
          cells.push_back(kDash);
          continue;
        }
        std::vector<std::string> v;
        for (int64_t k : ks) v.push_back(num(row->metrics.recall.at(k)));
        cells.push_back(fmt::format("{}", fmt::join(v, " / ")));
      }
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
  for (int64_t k : ks) t.header.push_back(fmt::format("recall@{}", k));
  for (int64_t k : ks) t.header.push_back(fmt::format("precision@{}", k));
  t.header.push_back(map_key(ks));
  for (const auto& r : rows) {
    std::vector<std::string> cells = {display_name(r.name(), unseen),
                                      std::to_string(r.metrics.queries)};
    const bool any = r.metrics.queries > 0;
    for (int64_t k : ks) cells.push_back(any ? num(r.metrics.recall.at(k)) : kDash);
    for (int64_t k : ks) cells.push_back(any ? num(r.metrics.precision.at(k)) : kDash);
    cells.push_back(any ? num(r.metrics.map_at_k) : kDash);
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
  return fmt::format("- trained on: {}; unseen (evaluated, never trained on): {}\n",
                     fmt::join(r.source.train_modalities, ", "),
                     r.unseen.empty() ? std::string("none") : fmt::format("{}", fmt::join(r.unseen, ", ")));
}

std::set<std::string> unseen_set(const Report& r) { return {r.unseen.begin(), r.unseen.end()}; }

}  // namespace

std::set<std::string> unseen_modalities(const std::vector<std::pair<std::string, Report>>& columns) {
  return columns.empty() ? std::set<std::string>{} : unseen_set(columns.front().second);
}

ojson to_json(const Report& report) {
  ojson j;
  j["format"] = kReportFormat;
  j["format_version"] = kReportFormatVersion;
  j["split"] = report.split;
  j["relevance"] = report.relevance;
  j["ks"] = report.ks;
  j["samples"] = report.samples;
  j["embeddings"] = {{"checkpoint", report.source.checkpoint},
                     {"step", report.source.step},
                     {"random_init", report.source.random_init},
                     {"train_modalities", report.source.train_modalities}};
  j["unseen_modalities"] = report.unseen;
  j["per_modality"] = ojson::object();
  for (const auto& r : report.per_modality) j["per_modality"][r.name()] = metrics_json(r.metrics, report.ks);
  j["cross_modal"] = ojson::object();
  for (const auto& r : report.cross_modal) j["cross_modal"][r.name()] = metrics_json(r.metrics, report.ks);
  return j;
}

Report report_from_json(const ojson& j, const std::string& origin) {
  try {
    const std::string format = j.at("format").get<std::string>();
    if (format != kReportFormat)
      throw Error(fmt::format("format is '{}', expected '{}'", format, kReportFormat));
    const int64_t version = j.at("format_version").get<int64_t>();
    if (version != kReportFormatVersion)
      throw Error(fmt::format("format_version is {}, this build reads version {}", version,
                              kReportFormatVersion));
    Report r;
    r.ks = j.at("ks").get<std::vector<int64_t>>();
    if (r.ks.empty()) throw Error("ks is empty");
    r.split = j.at("split").get<std::string>();
    r.relevance = j.at("relevance").get<std::string>();
    r.samples = j.at("samples").get<int64_t>();
    const auto& e = j.at("embeddings");
    r.source.checkpoint = e.at("checkpoint").get<std::string>();
    r.source.step = e.at("step").get<int64_t>();
    r.source.random_init = e.at("random_init").get<bool>();
    // Optional (reports written before they were recorded): unknown / none.
    if (e.contains("train_modalities"))
      r.source.train_modalities = e.at("train_modalities").get<std::vector<std::string>>();
    if (j.contains("unseen_modalities"))
      r.unseen = j.at("unseen_modalities").get<std::vector<std::string>>();
    for (const auto& [name, m] : j.at("per_modality").items())
      r.per_modality.push_back({name, name, metrics_from_json(m, r.ks)});
    for (const auto& [name, m] : j.at("cross_modal").items()) {
      auto arrow = name.find("->");
      if (arrow == std::string::npos)
        throw Error(fmt::format("cross_modal key '{}' is not of the form 'a->b'", name));
      r.cross_modal.push_back({name.substr(0, arrow), name.substr(arrow + 2), metrics_from_json(m, r.ks)});
    }
    return r;
  } catch (const nlohmann::json::exception& ex) {
    throw Error(fmt::format("retrieval report {}: {}", origin, ex.what()));
  } catch (const Error& ex) {
    throw Error(fmt::format("retrieval report {}: {}", origin, ex.what()));
  }
}

void write_report(const std::filesystem::path& path, const Report& report) {
  write_reports(path, {{"encoder", report}});
}

ojson to_json(const std::vector<std::pair<std::string, Report>>& columns) {
  M3RET_CHECK(!columns.empty(), "to_json needs at least one report");
  ojson j = to_json(columns.front().second);
  j["encoder"] = columns.front().first;
  j["baselines"] = ojson::object();
  for (size_t i = 1; i < columns.size(); ++i) {
    ojson b = to_json(columns[i].second);
    for (const char* key : {"format", "format_version", "split", "relevance", "ks", "samples"})
      b.erase(key);
    j["baselines"][columns[i].first] = std::move(b);
  }
  return j;
}

std::vector<std::pair<std::string, Report>> reports_from_json(const ojson& j,
                                                              const std::string& origin) {
  std::vector<std::pair<std::string, Report>> columns;
  columns.emplace_back(j.value("encoder", std::string("encoder")), report_from_json(j, origin));
  if (!j.contains("baselines")) return columns;
  for (const auto& [name, b] : j.at("baselines").items()) {
    ojson full = b;
    for (const char* key : {"format", "format_version", "split", "relevance", "ks", "samples"})
      full[key] = j.at(key);
    columns.emplace_back(name, report_from_json(full, origin + " (baseline " + name + ")"));
  }
  return columns;
}

std::string to_csv(const std::vector<std::pair<std::string, Report>>& columns) {
  M3RET_CHECK(!columns.empty(), "to_csv needs at least one report");
  const auto& ks = columns.front().second.ks;
  std::string out = "encoder,kind,query_modality,gallery_modality,queries,gallery";
  for (int64_t k : ks) out += fmt::format(",recall@{}", k);
  for (int64_t k : ks) out += fmt::format(",precision@{}", k);
  out += "," + map_key(ks) + "\n";
  for (const auto& [name, report] : columns) {
    if (report.ks != ks)
      throw Error(fmt::format("CSV report: '{}' uses other ks than '{}'", name, columns[0].first));
    for (const auto* rows : {&report.per_modality, &report.cross_modal}) {
      for (const auto& r : *rows) {
        const Metrics& m = r.metrics;
        // Encoder names are ours ("encoder", "random init", ...): no quoting needed
        // unless they hold a comma or a quote.
        std::string enc = name;
        if (enc.find_first_of(",\"") != std::string::npos) {
          std::string q = "\"";
          for (char c : enc) q += c == '"' ? std::string("\"\"") : std::string(1, c);
          enc = q + "\"";
        }
        out += fmt::format("{},{},{},{},{},{}", enc,
                           rows == &report.per_modality ? "per_modality" : "cross_modal",
                           r.query_modality, r.gallery_modality, m.queries, m.gallery);
        for (int64_t k : ks) out += fmt::format(",{:.6f}", m.recall.at(k));
        for (int64_t k : ks) out += fmt::format(",{:.6f}", m.precision.at(k));
        out += fmt::format(",{:.6f}\n", m.map_at_k);
      }
    }
  }
  return out;
}

void write_reports(const std::filesystem::path& path,
                   const std::vector<std::pair<std::string, Report>>& columns) {
  M3RET_CHECK(!columns.empty(), "write_reports needs at least one report");
  auto twin = [&](const char* ext) {
    auto p = path;
    p.replace_extension(ext);
    return p;
  };
  const std::string md = columns.size() == 1
                             ? to_markdown(columns[0].second)
                             : "# Retrieval report\n\n" + training_line(columns.front().second) +
                                   "\n" + comparison_table(columns, unseen_modalities(columns));
  fs::write_atomic(path, to_json(columns).dump(2) + "\n");
  fs::write_atomic(twin(".md"), md);
  fs::write_atomic(twin(".csv"), to_csv(columns));
}

Report read_report(const std::filesystem::path& path) {
  const std::string text = fs::read_file(path);
  ojson j;
  try {
    j = ojson::parse(text);
  } catch (const nlohmann::json::exception& ex) {
    throw Error(fmt::format("retrieval report {}: not valid JSON: {}", path.string(), ex.what()));
  }
  return report_from_json(j, path.string());
}

std::string to_markdown(const Report& report) {
  std::string out = "# Retrieval report\n\n";
  out += fmt::format("- embeddings: {}{} (step {})\n",
                     report.source.checkpoint.empty() ? "unknown checkpoint" : report.source.checkpoint,
                     report.source.random_init ? ", random init" : "", report.source.step);
  out += fmt::format("- split: {}; samples: {}; relevance: {}\n",
                     report.split.empty() ? "all" : report.split, report.samples, report.relevance);
  out += training_line(report) + "\n";
  out += "## Per modality (leave-one-out, same group excluded)\n\n";
  out += report_table(report.per_modality, report.ks, "modality", unseen_set(report)).markdown();
  if (!report.cross_modal.empty()) {
    out += "\n## Cross-modal\n\n";
    out += report_table(report.cross_modal, report.ks, "query → gallery", unseen_set(report)).markdown();
  }
  return out;
}

std::string comparison_table(const std::vector<std::pair<std::string, Report>>& columns,
                             const std::set<std::string>& unseen) {
  std::string out;
  for (const auto& s : comparison_sections(columns, unseen)) {
    if (!out.empty()) out += "\n";
    out += "### " + s.title + "\n\n" + s.table.markdown();
  }
  return out;
}

std::string comparison_text(const std::vector<std::pair<std::string, Report>>& columns,
                            const std::set<std::string>& unseen) {
  std::string out;
  for (const auto& s : comparison_sections(columns, unseen)) {
    if (!out.empty()) out += "\n";
    out += "== " + s.title + " ==\n" + s.table.text();
  }
  return out;
}

}  // namespace m3ret::eval
