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

// Labels as stored in manifests, shards and embedding files: joined by '|'.
// split_labels drops empty parts ("a||b|" -> {"a", "b"}; "" -> {}).
std::string join_labels(const std::vector<std::string>& labels);
std::vector<std::string> split_labels(const std::string& joined);

struct Sample {
  // Pixels, row-major [C, T, H, W], C = 1 (grey) or 3 (RGB), T = 1 for images,
  // frames for video, slices for volumes.
  std::vector<uint8_t> pixels;
  int64_t C = 0, T = 0, H = 0, W = 0;

  std::string id;        // unique within a dataset (stable: derived from the path)
  std::string modality;  // one of modality_names()
  std::vector<std::string> labels;  // multi-label allowed; may be empty
  std::string group;     // patient/study id; retrieval never counts a same-group hit
  std::string split;     // "train", "val", "test", or "" (unspecified)
  std::string source;    // path it was read from

  int64_t numel() const { return C * T * H * W; }
};

}  // namespace m3ret::data
