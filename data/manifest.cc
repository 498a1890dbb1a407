#include "data/manifest.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <limits>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "core/csv.h"
#include "core/error.h"
#include "core/fs.h"
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
constexpr int64_t kNoError = std::numeric_limits<int64_t>::max();

// `p` relative to `dir` when it lies under it, else `p` itself.
stdfs::path relative_if_under(const stdfs::path& p, const stdfs::path& dir) {
  auto abs_p = stdfs::absolute(p).lexically_normal();
  auto abs_d = stdfs::absolute(dir).lexically_normal();
  auto rel = abs_p.lexically_relative(abs_d);
  if (rel.empty() || *rel.begin() == "..") return abs_p;
  return rel;
}

// A manifest's records, read one at a time by csv::Reader through the file's
// buffer, each with the position where it starts.
class RecordStream {
 public:
  RecordStream(const stdfs::path& file, const std::string& name)
      : in_(open(file, name)), reader_(*in_, name) {}

  void seek(const RowPosition& at) { reader_.seek(at.offset, at.line); }

  // The next record that is not a blank line; false at the end. Throws
  // m3ret::Error "<name>:<line>: ..." for a malformed quoted field.
  bool next(csv::Record& rec, RowPosition& at) {
    if (!reader_.next(rec)) return false;
    at = {rec.offset, rec.line};
    return true;
  }

 private:
  static std::unique_ptr<std::ifstream> open(const stdfs::path& file, const std::string& name) {
    auto in = std::make_unique<std::ifstream>(file, std::ios::binary);
    if (!*in) throw Error(fmt::format("manifest {}: cannot open it for reading", name));
    return in;
  }

  std::unique_ptr<std::ifstream> in_;  // on the heap: reader_ keeps its buffer
  csv::Reader reader_;
};

// Where each column is in the records, from the header: the five columns
// (and optionally dataset), in any order, each exactly once.
struct Columns {
  std::array<int, 6> at{};
  std::vector<std::string> names;  // the header's fields
};

// The header's columns; "" or the error.
std::string read_header(const csv::Record& header, const std::string& name, Columns& cols) {
  cols.at.fill(-1);
  cols.names = header.fields;
  for (size_t i = 0; i < header.fields.size(); ++i) {
    auto it = std::find(kColumns.begin(), kColumns.end(), header.fields[i]);
    if (it == kColumns.end() || cols.at[it - kColumns.begin()] >= 0) {
      return fmt::format(
          "{}:{}: bad header column '{}' (expected exactly path,modality,labels,group,split and "
          "optionally dataset)",
          name, header.line, header.fields[i]);
    }
    cols.at[it - kColumns.begin()] = static_cast<int>(i);
  }
  for (size_t c = 0; c < kRequired; ++c) {
    if (cols.at[c] < 0) {
      return fmt::format(
          "{}:{}: header lacks column '{}' (expected path,modality,labels,group,split)", name,
          header.line, kColumns[c]);
    }
  }
  return "";
}

// What turns records into rows: the columns, the folder relative paths start
// in, whether paths must exist.
struct RowParser {
  Columns cols;
  stdfs::path dir;
  std::string name;
  bool check_paths = false;

  // Fills `row` from `rec`; "" or the error naming the file and line.
  std::string parse(const csv::Record& rec, ManifestRow& row) const {
    if (rec.fields.size() != cols.names.size()) {
      return fmt::format("{}:{}: expected {} fields ({}), got {}", name, rec.line,
                         cols.names.size(), fmt::join(cols.names, ","), rec.fields.size());
    }
    const auto& f = rec.fields;
    row.line = rec.line;
    row.modality = f[cols.at[1]];
    row.labels = split_labels(f[cols.at[2]]);
    row.group = f[cols.at[3]];
    row.split = f[cols.at[4]];
    row.dataset = cols.at[5] >= 0 ? f[cols.at[5]] : std::string();
    const std::string& path = f[cols.at[0]];
    if (path.empty()) return fmt::format("{}:{}: empty path", name, rec.line);
    if (!is_modality(row.modality)) {
      return fmt::format("{}:{}: unknown modality '{}' (expected one of {})", name, rec.line,
                         row.modality, fmt::join(modality_names(), ", "));
    }
    if (std::find(kSplits.begin(), kSplits.end(), row.split) == kSplits.end()) {
      return fmt::format("{}:{}: unknown split '{}' (expected train, val, test or empty)", name,
                         rec.line, row.split);
    }
    stdfs::path p(path);
    row.path = (p.is_absolute() ? p : dir / p).lexically_normal();
    stdfs::path series_dir;
    std::string series_id;
    if (check_paths && !stdfs::exists(row.path) &&
        !dicom::split_series_ref(row.path, series_dir, series_id)) {
      return fmt::format("{}:{}: path {} does not exist", name, rec.line, row.path.string());
    }
    return "";
  }
  // The raw path field of a record parse() accepted.
  const std::string& raw_path(const csv::Record& rec) const { return rec.fields[cols.at[0]]; }
};

// Opens a manifest for streaming: its records and a parser whose columns are
// still to be read from the header.
RecordStream open_manifest(const stdfs::path& csv_path, bool check_paths, RowParser& parser) {
  parser.name = csv_path.string();
  if (!stdfs::is_regular_file(csv_path)) {
    throw Error(fmt::format("manifest {} does not exist or is not a file", parser.name));
  }
  parser.dir = stdfs::absolute(csv_path).parent_path();
  parser.check_paths = check_paths;
  return RecordStream(csv_path, parser.name);
}

uint64_t path_hash(const stdfs::path& p) { return std::hash<std::string>{}(p.string()); }

// The first row before line `before` whose resolved path an earlier row has
// too, as the error read_manifest gives, or "". `hashes` are the path hashes
// of those rows: only the rows whose hash occurs twice are read again.
std::string find_duplicate(const stdfs::path& csv_path, const RowParser& parser,
                           std::vector<uint64_t> hashes, int64_t before) {
  std::sort(hashes.begin(), hashes.end());
  std::unordered_set<uint64_t> repeated;
  for (size_t i = 1; i < hashes.size(); ++i) {
    if (hashes[i] == hashes[i - 1]) repeated.insert(hashes[i]);
  }
  if (repeated.empty()) return "";
  RecordStream records(csv_path, parser.name);
  csv::Record rec;
  RowPosition at;
  ManifestRow row;
  std::unordered_map<std::string, int64_t> line_of;  // of the rows with a repeated hash only
  for (bool header = true; records.next(rec, at) && rec.line < before; header = false) {
    if (header || !parser.parse(rec, row).empty() || !repeated.count(path_hash(row.path))) continue;
    auto [seen, fresh] = line_of.emplace(row.path.string(), rec.line);
    if (!fresh) {
      return fmt::format("{}:{}: duplicate path {} (also on line {})", parser.name, rec.line,
                         parser.raw_path(rec), seen->second);
    }
  }
  return "";
}

}  // namespace

int64_t scan_manifest(const stdfs::path& csv_path,
                      const std::function<void(const ManifestRow&, const RowPosition&)>& visit,
                      bool check_paths) {
  RowParser parser;
  RecordStream records = open_manifest(csv_path, check_paths, parser);
  csv::Record rec;
  RowPosition at;
  ManifestRow row;
  std::vector<uint64_t> hashes;  // of each valid row's resolved path
  std::string error;             // the first one; the rest of the file is only parsed as CSV
  int64_t error_line = kNoError, rows = 0;
  bool header = true;
  // A malformed quote anywhere comes first, as when the whole text was parsed before the rows.
  while (records.next(rec, at)) {
    if (!error.empty()) continue;
    error = header ? read_header(rec, parser.name, parser.cols) : parser.parse(rec, row);
    if (!error.empty()) {
      error_line = rec.line;
    } else if (!header) {
      hashes.push_back(path_hash(row.path));
      visit(row, at);
      ++rows;
    }
    header = false;
  }
  if (header) {
    throw Error(fmt::format(
        "{}:1: empty manifest (expected header path,modality,labels,group,split)", parser.name));
  }
  const std::string duplicate = find_duplicate(csv_path, parser, std::move(hashes), error_line);
  if (!duplicate.empty()) throw Error(duplicate);
  if (!error.empty()) throw Error(error);
  return rows;
}

std::vector<ManifestRow> read_manifest(const stdfs::path& csv_path, bool check_paths) {
  std::vector<ManifestRow> rows;
  scan_manifest(
      csv_path, [&](const ManifestRow& row, const RowPosition&) { rows.push_back(row); },
      check_paths);
  return rows;
}

struct ManifestCursor::Impl {
  RowParser parser;
  RecordStream records;
  csv::Record rec;
  explicit Impl(const stdfs::path& csv) : records(open_manifest(csv, false, parser)) {}
};

ManifestCursor::ManifestCursor(const stdfs::path& csv) : impl_(std::make_unique<Impl>(csv)) {
  RowPosition at;
  if (!impl_->records.next(impl_->rec, at)) {
    throw Error(fmt::format(
        "{}:1: empty manifest (expected header path,modality,labels,group,split)", csv.string()));
  }
  const std::string error = read_header(impl_->rec, impl_->parser.name, impl_->parser.cols);
  if (!error.empty()) throw Error(error);
}

ManifestCursor::~ManifestCursor() = default;

void ManifestCursor::seek(const RowPosition& at) { impl_->records.seek(at); }

bool ManifestCursor::next(ManifestRow& row, RowPosition* at) {
  RowPosition here;
  if (!impl_->records.next(impl_->rec, here)) return false;
  const std::string error = impl_->parser.parse(impl_->rec, row);
  if (!error.empty()) throw Error(error);
  if (at) *at = here;
  return true;
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
