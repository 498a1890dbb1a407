#include "data/import_util.h"

#include <algorithm>
#include <cctype>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "data/integrity.h"
#include "data/video_reader.h"

namespace m3ret::data::importer {

namespace stdfs = std::filesystem;

namespace {

void walk_into(const stdfs::path& dir, Tree& tree, std::set<stdfs::path>& seen, std::vector<std::string>& skipped) {
  std::error_code ec;
  std::vector<stdfs::path> entries;
  for (auto it = stdfs::directory_iterator(dir, ec); !ec && it != stdfs::directory_iterator(); it.increment(ec)) {
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
        skipped.push_back(fmt::format("{}: folder already visited as {} (symbolic link loop or second link)",
                                      p.string(), real.string()));
        continue;
      }
      tree.dirs.push_back(p);
      walk_into(p, tree, seen, skipped);
      continue;
    }
    const std::string why = integrity::not_a_regular_file(p);
    if (why.empty()) tree.files.push_back(p);
    else skipped.push_back(fmt::format("{}: {}", p.string(), why));
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
  for (const char* ext : {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".nii", ".nii.gz",
                          ".nrrd", ".nhdr", ".mha", ".mhd"}) {
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

void add_class_folders(const stdfs::path& dir, const std::string& modality, const std::string& split,
                       ImportResult& out) {
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

}  // namespace m3ret::data::importer
