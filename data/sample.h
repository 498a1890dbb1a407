// The unified sample: every modality becomes uint8 [C, T, H, W] plus metadata.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace m3ret::data {

// Modality names used in manifests, shards and reports.
inline const std::vector<std::string>& modality_names() {
  static const std::vector<std::string> names = {"xray", "ultrasound", "endoscopy",
                                                 "ct",   "mri",        "other"};
  return names;
}
bool is_modality(const std::string& name);

// Sample groups: the samples of one group share one shape, so shards and
// training batches are cut per group. Every modality is a group; endoscopy
// still images form a group of their own, kEndoscopyImages ([3, 1, S, S]),
// beside the endoscopy videos ([3, T, S, S]).
inline constexpr const char* kEndoscopyImages = "endoscopy-image";
// modality_names() order, kEndoscopyImages right after endoscopy.
const std::vector<std::string>& group_names();
// The modality of a group: "endoscopy" for kEndoscopyImages, else the group itself.
std::string group_modality(const std::string& group);

// Labels as stored in manifests, shards and embedding files: joined by '|'.
// split_labels drops empty parts ("a||b|" -> {"a", "b"}; "" -> {}).
std::string join_labels(const std::vector<std::string>& labels);
std::vector<std::string> split_labels(const std::string& joined);

struct Sample {
  // Pixels, row-major [C, T, H, W], C = 1 (grey) or 3 (RGB), T = 1 for images,
  // frames for video, slices for volumes.
  std::vector<uint8_t> pixels;
  int64_t C = 0, T = 0, H = 0, W = 0;

  std::string id;                   // unique within a dataset (stable: derived from the path)
  std::string modality;             // one of modality_names()
  std::vector<std::string> labels;  // multi-label allowed; may be empty
  std::string group;                // patient/study id; retrieval never counts a same-group hit
  std::string split;                // "train", "val", "test", or "" (unspecified)
  std::string source;               // path it was read from
  std::string dataset;              // the manifest's dataset column ("" = none)

  int64_t numel() const { return C * T * H * W; }
};

// Clips of a stored video (docs/data.md, "Video clips"): a video is stored as
// F frames [C, F, H, W]; a clip is T of them at a stride s, frames
// start, start + s, ..., start + (T - 1) s.
// Number of valid starts, F - (T - 1) s; throws m3ret::Error naming the
// numbers when the clip does not fit (F < (T - 1) s + 1) or one is < 1.
int64_t clip_starts(int64_t stored_frames, int64_t frames, int64_t stride);
// The start of the fixed centre clip: (clip_starts - 1) / 2.
int64_t centre_clip_start(int64_t stored_frames, int64_t frames, int64_t stride);
// Copies the clip [C, T, plane] starting at stored frame `start` out of the
// stored frames [C, F, plane] (plane = H * W bytes). Throws m3ret::Error when
// the clip runs past the stored frames.
void copy_clip(const uint8_t* stored, int64_t C, int64_t stored_frames, int64_t plane,
               int64_t start, int64_t frames, int64_t stride, uint8_t* out);

}  // namespace m3ret::data
