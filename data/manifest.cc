#include "data/manifest.h"

#include <algorithm>
#include <array>
#include <unordered_map>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/csv.h"
#include "data/dicom.h"
#include "data/sample.h"

namespace m3ret::data {

namespace {

namespace stdfs = std::filesystem;

// The five required columns, then the optional `dataset`.
const std::array<std::string, 6> kColumns = {"path",  "modality", "labels",
                                             "group", "split",    "dataset"};
constexpr size_t kRequired = 5;
const std::array<std::string, 4> kSplits = {"", "train", "val", "test"};

// `p` relative to `dir` when it lies under it, else `p` itself.
stdfs::path relative_if_under(const stdfs::path& p, const stdfs::path& dir) {
  auto abs_p = stdfs::absolute(p).lexically_normal();
  auto abs_d = stdfs::absolute(dir).lexically_normal();
  auto rel = abs_p.lexically_relative(abs_d);
  if (rel.empty() || *rel.begin() == "..") return abs_p;
  return rel;
}

}  // namespace

std::vector<ManifestRow> read_manifest(const stdfs::path& csv_path, bool check_paths) {
  const std::string name = csv_path.string();
  if (!stdfs::is_regular_file(csv_path)) {
    throw Error(fmt::format("manifest {} does not exist or is not a file", name));
  }
  auto records = csv::parse(fs::read_file(csv_path), name);
  if (records.empty()) {
    throw Error(fmt::format(
        "{}:1: empty manifest (expected header path,modality,labels,group,split)", name));
  }
  // Header: the five columns (and optionally dataset), in any order, each exactly once.
  const auto& header = records.front();
  std::array<int, 6> column{};
  column.fill(-1);
  for (size_t i = 0; i < header.fields.size(); ++i) {
    auto it = std::find(kColumns.begin(), kColumns.end(), header.fields[i]);
    if (it == kColumns.end() || column[it - kColumns.begin()] >= 0) {
      throw Error(fmt::format(
          "{}:{}: bad header column '{}' (expected exactly path,modality,labels,group,split and "
          "optionally dataset)",
          name, header.line, header.fields[i]));
    }
    column[it - kColumns.begin()] = static_cast<int>(i);
  }
  for (size_t c = 0; c < kRequired; ++c) {
    if (column[c] < 0) {
      throw Error(
          fmt::format("{}:{}: header lacks column '{}' (expected path,modality,labels,group,split)",
                      name, header.line, kColumns[c]));
    }
  }

  const auto dir = stdfs::absolute(csv_path).parent_path();
  std::vector<ManifestRow> rows;
  rows.reserve(records.size() - 1);
  std::unordered_map<std::string, int64_t> line_of;  // normalised path -> line
  for (size_t r = 1; r < records.size(); ++r) {
    const auto& rec = records[r];
    if (rec.fields.size() != header.fields.size()) {
      throw Error(fmt::format("{}:{}: expected {} fields ({}), got {}", name, rec.line,
                              header.fields.size(), fmt::join(header.fields, ","),
                              rec.fields.size()));
    }
    ManifestRow row;
    row.line = rec.line;
    const std::string& path = rec.fields[column[0]];
    row.modality = rec.fields[column[1]];
    row.labels = split_labels(rec.fields[column[2]]);
    row.group = rec.fields[column[3]];
    row.split = rec.fields[column[4]];
    if (column[5] >= 0) row.dataset = rec.fields[column[5]];
    if (path.empty()) throw Error(fmt::format("{}:{}: empty path", name, rec.line));
    if (!is_modality(row.modality)) {
      throw Error(fmt::format("{}:{}: unknown modality '{}' (expected one of {})", name, rec.line,
                              row.modality, fmt::join(modality_names(), ", ")));
    }
    if (std::find(kSplits.begin(), kSplits.end(), row.split) == kSplits.end()) {
      throw Error(fmt::format("{}:{}: unknown split '{}' (expected train, val, test or empty)",
                              name, rec.line, row.split));
    }
    stdfs::path p(path);
    row.path = (p.is_absolute() ? p : dir / p).lexically_normal();
    stdfs::path series_dir;
    std::string series_id;
    if (check_paths && !stdfs::exists(row.path) &&
        !dicom::split_series_ref(row.path, series_dir, series_id)) {
      throw Error(fmt::format("{}:{}: path {} does not exist", name, rec.line, row.path.string()));
    }
    // Sample ids are paths: two rows for one file would make two samples with one id.
    auto [seen, fresh] = line_of.emplace(row.path.string(), rec.line);
    if (!fresh) {
      throw Error(fmt::format("{}:{}: duplicate path {} (also on line {})", name, rec.line, path,
                              seen->second));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

void write_manifest(const stdfs::path& csv_path, const std::vector<ManifestRow>& rows) {
  const auto dir = stdfs::absolute(csv_path).parent_path();
  const bool datasets = std::any_of(rows.begin(), rows.end(),
                                    [](const ManifestRow& r) { return !r.dataset.empty(); });
  std::string out = datasets ? "path,modality,labels,group,split,dataset\n"
                             : "path,modality,labels,group,split\n";
  for (const auto& row : rows) {
    if (row.path.empty())
      throw Error(fmt::format("write_manifest {}: a row has an empty path", csv_path.string()));
    if (!is_modality(row.modality)) {
      throw Error(fmt::format("write_manifest {}: unknown modality '{}' for {}", csv_path.string(),
                              row.modality, row.path.string()));
    }
    std::string labels;
    for (size_t i = 0; i < row.labels.size(); ++i) {
      if (row.labels[i].find('|') != std::string::npos || row.labels[i].empty()) {
        throw Error(fmt::format("write_manifest {}: label '{}' of {} is empty or contains '|'",
                                csv_path.string(), row.labels[i], row.path.string()));
      }
      labels += (i ? "|" : "") + row.labels[i];
    }
    out += fmt::format(
        "{},{},{},{},{}\n", csv::quote(relative_if_under(row.path, dir).generic_string()),
        csv::quote(row.modality), csv::quote(labels), csv::quote(row.group), csv::quote(row.split));
    if (datasets) out.insert(out.size() - 1, "," + csv::quote(row.dataset));
  }
  fs::write_atomic(csv_path, out);
}

std::string sample_id(const ManifestRow& row, const stdfs::path& manifest_dir) {
  stdfs::path p = row.path.is_absolute() ? row.path : manifest_dir / row.path;
  return relative_if_under(p, manifest_dir).generic_string();
}

}  // namespace m3ret::data
