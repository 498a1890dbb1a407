#include "data/import_util.h"

#include <algorithm>
#include <cctype>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <zlib.h>

#include "core/error.h"
#include "data/integrity.h"
#include "data/video_reader.h"

namespace m3ret::data::importer {

namespace stdfs = std::filesystem;

namespace {

void walk_into(const stdfs::path& dir, Tree& tree, std::set<stdfs::path>& seen,
               std::vector<std::string>& skipped) {
  std::error_code ec;
  std::vector<stdfs::path> entries;
  for (auto it = stdfs::directory_iterator(dir, ec); !ec && it != stdfs::directory_iterator();
       it.increment(ec)) {
    entries.push_back(it->path());
  }
  if (ec) {
    skipped.push_back(fmt::format("{}: cannot list the folder: {}", dir.string(), ec.message()));
    return;
  }
  std::sort(entries.begin(), entries.end());
  for (const auto& p : entries) {
    const std::string name = p.filename().string();
    if (!name.empty() && name[0] == '.') continue;
    const stdfs::file_status st = stdfs::status(p, ec);  // follows symbolic links
    if (stdfs::is_directory(st)) {
      const stdfs::path real = stdfs::canonical(p, ec);
      if (ec || !seen.insert(real).second) {
        skipped.push_back(
            fmt::format("{}: folder already visited as {} (symbolic link loop or second link)",
                        p.string(), real.string()));
        continue;
      }
      tree.dirs.push_back(p);
      walk_into(p, tree, seen, skipped);
      continue;
    }
    const std::string why = integrity::not_a_regular_file(p);
    if (why.empty())
      tree.files.push_back(p);
    else
      skipped.push_back(fmt::format("{}: {}", p.string(), why));
  }
}

}  // namespace

Tree walk(const stdfs::path& dir, std::vector<std::string>& skipped) {
  Tree tree;
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec)) return tree;
  std::set<stdfs::path> seen = {stdfs::canonical(dir, ec)};
  walk_into(dir, tree, seen, skipped);
  std::sort(tree.files.begin(), tree.files.end());
  std::sort(tree.dirs.begin(), tree.dirs.end());
  return tree;
}

std::vector<stdfs::path> files_under(const stdfs::path& dir, std::vector<std::string>& skipped) {
  return walk(dir, skipped).files;
}

std::string lower_name(const stdfs::path& path) {
  std::string n = path.filename().string();
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
  return n;
}

bool is_sample_file(const stdfs::path& path) {
  if (video::is_video_path(path)) return true;
  const std::string n = lower_name(path);
  for (const char* ext : {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".nii",
                          ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd"}) {
    const std::string e(ext);
    if (n.size() > e.size() && n.compare(n.size() - e.size(), e.size(), e) == 0) return true;
  }
  return false;
}

void require(const std::string& importer, const stdfs::path& path, const std::string& what) {
  std::error_code ec;
  if (!stdfs::exists(path, ec)) {
    throw Error(fmt::format("import {}: {} not found: {}", importer, what, path.string()));
  }
}

stdfs::path find_first(const stdfs::path& root, const std::vector<std::string>& candidates) {
  std::error_code ec;
  for (const auto& c : candidates) {
    if (stdfs::exists(root / c, ec)) return root / c;
  }
  return {};
}

void add_class_folders(const stdfs::path& dir, const std::string& modality,
                       const std::string& split, ImportResult& out) {
  for (const auto& file : files_under(dir, out.skipped)) {
    const stdfs::path rel = file.lexically_relative(dir);
    if (std::distance(rel.begin(), rel.end()) < 2) {
      out.skipped.push_back(fmt::format("{}: not inside a class folder", file.string()));
      continue;
    }
    if (!is_sample_file(file)) continue;  // notes, CSVs, thumbnails' metadata
    ManifestRow row;
    row.path = file;
    row.modality = modality;
    row.labels = {rel.begin()->string()};
    row.split = split;
    out.rows.push_back(std::move(row));
  }
}

size_t Table::column(const std::string& col) const {
  const auto& h = records.front().fields;
  auto it = std::find(h.begin(), h.end(), col);
  if (it == h.end()) {
    throw Error(
        fmt::format("{}:1: no column '{}' (columns present: {})", name, col, fmt::join(h, ", ")));
  }
  return static_cast<size_t>(it - h.begin());
}

const std::vector<std::string>& Table::row(size_t r) const {
  const auto& rec = records[r];
  if (rec.fields.size() != records.front().fields.size()) {
    throw Error(fmt::format("{}:{}: expected {} fields, got {}", name, rec.line,
                            records.front().fields.size(), rec.fields.size()));
  }
  return rec.fields;
}

Table read_table(const stdfs::path& file, char sep) {
  // gzread reads a plain file as it is, so one reader serves .csv and .csv.gz.
  gzFile gz = gzopen(file.c_str(), "rb");
  if (!gz) throw Error(fmt::format("{}: cannot open", file.string()));
  std::string text;
  char buf[1 << 16];
  int n = 0;
  while ((n = gzread(gz, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  // A stream cut short ends without an error from gzread: Z_BUF_ERROR says so.
  int code = Z_OK;
  const std::string why = gzerror(gz, &code);
  gzclose(gz);
  if (n < 0 || code != Z_OK) {
    throw Error(fmt::format("{}: cannot read (damaged gzip stream?): {}", file.string(), why));
  }
  Table t{file.string(), csv::parse(text, file.string(), sep)};
  if (t.records.empty())
    throw Error(fmt::format("{}:1: empty file (expected a header row)", file.string()));
  return t;
}

stdfs::path require_one(const std::string& importer, const stdfs::path& dir,
                        const std::vector<std::string>& names) {
  const stdfs::path found = find_first(dir, names);
  if (found.empty()) {
    throw Error(
        fmt::format("import {}: {} not found in {}", importer, names.front(), dir.string()));
  }
  return found;
}

}  // namespace m3ret::data::importer
