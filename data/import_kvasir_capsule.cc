// Kvasir-Capsule (video capsule endoscopy): labelled_images/<class>/<video>_<frame>.jpg
// (47,238 frames in 14 classes, each named by the video it comes from), the
// official 2-fold image split official_splits/split_{0,1}.csv (filename,label),
// and 117 videos: labelled_videos/<video>.mp4 (43, whose frames are the labelled
// images) and unlabelled_videos/<video>.mp4 (74). A labelled video's labels are
// the classes of its labelled frames; an unlabelled video has none and trains.
// Every row's group is its video: the frames of one examination stay together.
#include <map>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "data/import_util.h"
#include "data/video_reader.h"

namespace m3ret::data::importer {

namespace stdfs = std::filesystem;

namespace {

// The video id of a labelled frame: its file name up to the last '_' ("" when none).
std::string video_of(const stdfs::path& frame) {
  const std::string stem = frame.stem().string();
  const size_t underscore = stem.rfind('_');
  return underscore == std::string::npos ? "" : stem.substr(0, underscore);
}

// Frame file stem -> split, from the official two folds (split_0 -> train, split_1 -> test).
std::map<std::string, std::string> official_folds(const stdfs::path& root) {
  std::map<std::string, std::string> split_of;
  for (const auto& [file, split] :
       {std::pair<const char*, const char*>{"split_0.csv", "train"}, {"split_1.csv", "test"}}) {
    const stdfs::path p = root / "official_splits" / file;
    if (!stdfs::exists(p)) continue;
    const Table t = read_table(p);
    const size_t c_name = t.column("filename");
    for (size_t r = 1; r < t.records.size(); ++r)
      split_of[stdfs::path(t.row(r)[c_name]).stem().string()] = split;
  }
  return split_of;
}

struct VideoFrames {
  std::set<std::string> labels, splits;
};

// The labelled frames (one row each) and, per video, the classes and splits of its frames.
std::map<std::string, VideoFrames> add_frames(const stdfs::path& images, const ImportOptions& opts,
                                              const std::string& modality, ImportResult& out) {
  const auto split_of = official_folds(opts.root);
  std::map<std::string, VideoFrames> videos;
  for (const auto& file : files_under(images, out.skipped)) {
    if (!is_sample_file(file)) continue;
    const std::string video = video_of(file);
    if (file.parent_path() == images || video.empty()) {
      out.skipped.push_back(
          fmt::format("{}: not <video>_<frame> inside a class folder", file.string()));
      continue;
    }
    ManifestRow row;
    row.path = file;
    row.modality = modality;
    row.labels = {file.parent_path().filename().string()};
    row.group = "kvasir-capsule:" + video;
    auto it = split_of.find(file.stem().string());
    if (it != split_of.end()) row.split = it->second;
    videos[video].labels.insert(row.labels.front());
    videos[video].splits.insert(row.split);
    out.rows.push_back(std::move(row));
  }
  return videos;
}

// The videos under `dir`; labelled ones take their frames' classes (and their split when
// all their frames share one), unlabelled ones no labels and the train split.
void add_videos(const stdfs::path& dir, bool labelled,
                const std::map<std::string, VideoFrames>& frames, const std::string& modality,
                ImportResult& out) {
  for (const auto& file : files_under(dir, out.skipped)) {
    if (!video::is_video_path(file)) continue;
    const std::string video = file.stem().string();
    ManifestRow row;
    row.path = file;
    row.modality = modality;
    row.group = "kvasir-capsule:" + video;
    row.split = "train";
    if (labelled) {
      auto it = frames.find(video);
      if (it == frames.end()) {
        out.skipped.push_back(fmt::format("{}: no labelled frame {}_<frame> under labelled_images/",
                                          file.string(), video));
        continue;
      }
      row.labels.assign(it->second.labels.begin(), it->second.labels.end());
      row.split = it->second.splits.size() == 1 ? *it->second.splits.begin() : "";
    }
    out.rows.push_back(std::move(row));
  }
}

}  // namespace

ImportResult kvasir_capsule(const ImportOptions& opts) {
  const stdfs::path images = find_first(opts.root, {"labelled_images", "images"});
  const bool has_labelled = stdfs::is_directory(opts.root / "labelled_videos");
  if (images.empty() && !has_labelled && !stdfs::is_directory(opts.root / "unlabelled_videos")) {
    throw Error(
        fmt::format("import kvasir-capsule: none of labelled_images/, labelled_videos/, "
                    "unlabelled_videos/ in {}",
                    opts.root.string()));
  }
  if (has_labelled && images.empty()) {
    throw Error(fmt::format(
        "import kvasir-capsule: labelled_videos/ take their labels from their frames, but "
        "labelled_images/ was not found in {}",
        opts.root.string()));
  }
  const std::string modality = opts.modality.empty() ? "endoscopy" : opts.modality;
  ImportResult out;
  const auto frames = images.empty() ? std::map<std::string, VideoFrames>{}
                                     : add_frames(images, opts, modality, out);
  add_videos(opts.root / "labelled_videos", true, frames, modality, out);
  add_videos(opts.root / "unlabelled_videos", false, frames, modality, out);
  return out;
}

}  // namespace m3ret::data::importer
