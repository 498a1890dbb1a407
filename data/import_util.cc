#include "data/import_util.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "core/error.h"
#include "data/video_reader.h"

namespace m3ret::data::importer {

namespace stdfs = std::filesystem;

std::vector<stdfs::path> files_under(const stdfs::path& dir) {
  std::vector<stdfs::path> out;
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec)) return out;
  for (auto it = stdfs::recursive_directory_iterator(dir, stdfs::directory_options::follow_directory_symlink);
       it != stdfs::recursive_directory_iterator(); ++it) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) out.push_back(it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
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
  for (const auto& file : files_under(dir)) {
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
