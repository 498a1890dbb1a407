// HyperKvasir: labeled-images/<tract>/<category>/<class>/*.jpg and
// labeled-videos/ (same class folders, or flat with the class in
// hyper-kvasir-video-metadata.csv, ';'-separated). The official 2-fold image
// split (official_splits/2_fold_split.csv: file-name;class-name;split-index)
// maps split 0 to train and 1 to test when present. unlabeled-images/images/*
// (99,417 images) are rows without labels in the train split, for pretraining;
// HyperKvasir has no unlabelled videos (its 374 videos are all labelled).
#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/csv.h"
#include "data/import_util.h"
#include "data/video_reader.h"

namespace m3ret::data::importer {

namespace stdfs = std::filesystem;

namespace {

// Column `name` of a ';'-separated HyperKvasir CSV: file name -> value.
std::map<std::string, std::string> read_column(const stdfs::path& file, const std::string& name) {
  const auto records = csv::parse(fs::read_file(file), file.string(), ';');
  std::map<std::string, std::string> out;
  if (records.empty()) return out;
  const auto& h = records.front().fields;
  auto key = std::find(h.begin(), h.end(), "file-name");
  auto val = std::find(h.begin(), h.end(), name);
  if (key == h.end() || val == h.end()) {
    throw Error(fmt::format("{}:1: expected columns 'file-name' and '{}' (';'-separated)",
                            file.string(), name));
  }
  const size_t k = key - h.begin(), v = val - h.begin();
  for (size_t r = 1; r < records.size(); ++r) {
    const auto& f = records[r].fields;
    if (f.size() <= std::max(k, v)) {
      throw Error(fmt::format("{}:{}: too few fields", file.string(), records[r].line));
    }
    out[f[k]] = f[v];
  }
  return out;
}

// labeled-images/<tract>/<category>/<class>/*, split from the official 2-fold file.
void add_labelled_images(const ImportOptions& opts, const std::string& modality,
                         ImportResult& out) {
  const stdfs::path images = opts.root / "labeled-images";
  std::map<std::string, std::string> split_of;  // image file name -> split index
  if (auto p = find_first(opts.root,
                          {"official_splits/2_fold_split.csv", "labeled-images/2_fold_split.csv"});
      !p.empty()) {
    split_of = read_column(p, "split-index");
  }
  for (const auto& file : files_under(images, out.skipped)) {
    if (!is_sample_file(file)) continue;
    if (file.parent_path() == images) {
      out.skipped.push_back(fmt::format("{}: not inside a class folder", file.string()));
      continue;
    }
    ManifestRow row;
    row.path = file;
    row.modality = modality;
    row.labels = {file.parent_path().filename().string()};  // .../<class>/<image>
    auto it = split_of.find(file.filename().string());
    if (it != split_of.end())
      row.split = it->second == "0" ? "train" : it->second == "1" ? "test" : "";
    out.rows.push_back(std::move(row));
  }
}

// unlabeled-images/images/*: no labels, always train (pretraining data; never an
// evaluation query or gallery item, since evaluation reads the test split).
void add_unlabelled_images(const ImportOptions& opts, const std::string& modality,
                           ImportResult& out) {
  for (const auto& file : files_under(opts.root / "unlabeled-images", out.skipped)) {
    if (!is_sample_file(file)) continue;
    ManifestRow row;
    row.path = file;
    row.modality = modality;
    row.split = "train";
    out.rows.push_back(std::move(row));
  }
}

// labeled-videos/**/<class>/*.avi, or flat with the class in the video metadata CSV.
void add_videos(const ImportOptions& opts, const std::string& modality, ImportResult& out) {
  const stdfs::path videos = opts.root / "labeled-videos";
  std::map<std::string, std::string> finding;  // for videos directly in labeled-videos/
  if (auto p = find_first(opts.root, {"hyper-kvasir-video-metadata.csv",
                                      "labeled-videos/hyper-kvasir-video-metadata.csv"});
      !p.empty()) {
    finding = read_column(p, "finding");
  }
  for (const auto& file : files_under(videos, out.skipped)) {
    if (!video::is_video_path(file)) continue;
    ManifestRow row;
    row.path = file;
    row.modality = modality;
    if (file.parent_path() != videos) {
      row.labels = {file.parent_path().filename().string()};
    } else {
      // The metadata lists names with or without the extension.
      auto it = finding.find(file.filename().string());
      if (it == finding.end()) it = finding.find(file.stem().string());
      if (it == finding.end()) {
        out.skipped.push_back(fmt::format(
            "{}: no class folder and not in hyper-kvasir-video-metadata.csv", file.string()));
        continue;
      }
      row.labels = {it->second};
    }
    out.rows.push_back(std::move(row));
  }
}

}  // namespace

ImportResult hyperkvasir(const ImportOptions& opts) {
  if (!stdfs::is_directory(opts.root / "labeled-images") &&
      !stdfs::is_directory(opts.root / "labeled-videos") &&
      !stdfs::is_directory(opts.root / "unlabeled-images")) {
    throw Error(fmt::format(
        "import hyperkvasir: none of labeled-images/, labeled-videos/, unlabeled-images/ in {}",
        opts.root.string()));
  }
  const std::string modality = opts.modality.empty() ? "endoscopy" : opts.modality;
  ImportResult out;
  add_labelled_images(opts, modality, out);
  add_unlabelled_images(opts, modality, out);
  add_videos(opts, modality, out);
  return out;
}

}  // namespace m3ret::data::importer
