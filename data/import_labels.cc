// Labels (and a split) from a CSV keyed by id, joined onto imported rows.
#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/csv.h"
#include "data/import_util.h"
#include "data/sample.h"

namespace m3ret::data::importer {

namespace {

namespace stdfs = std::filesystem;

int column_of(const csv::Record& header, const std::string& col, const std::string& flag,
              const std::string& name) {
  auto it = std::find(header.fields.begin(), header.fields.end(), col);
  if (it == header.fields.end()) {
    throw Error(fmt::format("{}: no column '{}' ({}); columns present: {}", name, col, flag,
                            fmt::join(header.fields, ", ")));
  }
  return static_cast<int>(it - header.fields.begin());
}

// The ids row i may be keyed by (ImportResult::ids, then path-derived ones).
std::vector<std::string> keys_of(const ImportResult& result, size_t i, const stdfs::path& root) {
  std::vector<std::string> keys;
  if (i < result.ids.size()) keys = result.ids[i];
  const stdfs::path& p = result.rows[i].path;
  const auto rel = stdfs::absolute(p).lexically_normal().lexically_relative(
      stdfs::absolute(root).lexically_normal());
  if (!rel.empty() && *rel.begin() != "..") keys.push_back(rel.generic_string());
  keys.push_back(p.filename().string());
  keys.push_back(p.stem().string());
  keys.erase(std::remove(keys.begin(), keys.end(), std::string()), keys.end());
  return keys;
}

}  // namespace

LabelTable read_label_table(const ImportOptions& opts) {
  LabelTable table;
  if (opts.labels_csv.empty()) return table;
  const std::string name = opts.labels_csv.string();
  if (!stdfs::is_regular_file(opts.labels_csv)) {
    throw Error(fmt::format("--labels {} does not exist or is not a file", name));
  }
  const auto records = csv::parse(fs::read_file(opts.labels_csv), name);
  if (records.empty())
    throw Error(fmt::format("{}: empty labels CSV (expected a header row)", name));
  const auto& header = records.front();
  const int id = column_of(header, opts.id_column, "--id-column", name);
  const int labels = column_of(header, opts.labels_column, "--labels-column", name);
  const int split =
      opts.split_column.empty() ? -1 : column_of(header, opts.split_column, "--split-column", name);
  std::map<std::string, int64_t> line_of;
  for (size_t r = 1; r < records.size(); ++r) {
    const auto& rec = records[r];
    if (rec.fields.size() != header.fields.size()) {
      throw Error(fmt::format("{}:{}: expected {} fields, got {}", name, rec.line,
                              header.fields.size(), rec.fields.size()));
    }
    const std::string& key = rec.fields[id];
    if (key.empty())
      throw Error(fmt::format("{}:{}: empty id in column '{}'", name, rec.line, opts.id_column));
    auto [seen, fresh] = line_of.emplace(key, rec.line);
    if (!fresh) {
      throw Error(fmt::format("{}:{}: id '{}' listed twice (also on line {})", name, rec.line, key,
                              seen->second));
    }
    LabelTable::Entry e{split_labels(rec.fields[labels]), split >= 0 ? rec.fields[split] : "",
                        split >= 0};
    if (e.split != "" && e.split != "train" && e.split != "val" && e.split != "test") {
      throw Error(fmt::format(
          "{}:{}: unknown split '{}' in column '{}' (expected train, val, test or empty)", name,
          rec.line, e.split, opts.split_column));
    }
    table.by_id.emplace(key, std::move(e));
  }
  return table;
}

void join_labels(const ImportOptions& opts, const LabelTable& table, ImportResult& result) {
  if (opts.labels_csv.empty()) return;
  std::vector<ManifestRow> kept;
  for (size_t i = 0; i < result.rows.size(); ++i) {
    ManifestRow& row = result.rows[i];
    const auto keys = keys_of(result, i, opts.root);
    const LabelTable::Entry* found = nullptr;
    for (const auto& k : keys) {
      auto it = table.by_id.find(k);
      if (it != table.by_id.end()) {
        found = &it->second;
        break;
      }
    }
    if (!found) {
      result.skipped.push_back(fmt::format("{}: id '{}' not in {}", row.path.string(), keys.front(),
                                           opts.labels_csv.string()));
      continue;
    }
    row.labels = found->labels;
    if (found->has_split) row.split = found->split;
    kept.push_back(std::move(row));
  }
  result.rows = std::move(kept);
  result.ids.clear();
}

}  // namespace m3ret::data::importer
