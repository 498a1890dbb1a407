#include "data/sample.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/error.h"

namespace m3ret::data {

bool is_modality(const std::string& name) {
  const auto& names = modality_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

const std::vector<std::string>& group_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& m : modality_names()) {
      v.push_back(m);
      if (m == "endoscopy") v.push_back(kEndoscopyImages);
    }
    return v;
  }();
  return names;
}

std::string group_modality(const std::string& group) {
  return group == kEndoscopyImages ? "endoscopy" : group;
}

std::string join_labels(const std::vector<std::string>& labels) {
  std::string out;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) out += '|';
    out += labels[i];
  }
  return out;
}

std::vector<std::string> split_labels(const std::string& joined) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= joined.size()) {
    size_t bar = joined.find('|', start);
    if (bar == std::string::npos) bar = joined.size();
    if (bar > start) out.push_back(joined.substr(start, bar - start));
    start = bar + 1;
  }
  return out;
}

int64_t clip_starts(int64_t stored_frames, int64_t frames, int64_t stride) {
  if (frames < 1 || stride < 1 || stored_frames < (frames - 1) * stride + 1) {
    throw Error(
        fmt::format("a clip of {} frames at stride {} needs {} stored frames, the video has {}",
                    frames, stride, (frames - 1) * stride + 1, stored_frames));
  }
  return stored_frames - (frames - 1) * stride;
}

int64_t centre_clip_start(int64_t stored_frames, int64_t frames, int64_t stride) {
  return (clip_starts(stored_frames, frames, stride) - 1) / 2;
}

void copy_clip(const uint8_t* stored, int64_t C, int64_t stored_frames, int64_t plane,
               int64_t start, int64_t frames, int64_t stride, uint8_t* out) {
  const int64_t starts = clip_starts(stored_frames, frames, stride);
  if (start < 0 || start >= starts) {
    throw Error(
        fmt::format("clip start {} is outside [0, {}) for {} stored frames, {} frames at stride {}",
                    start, starts, stored_frames, frames, stride));
  }
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t t = 0; t < frames; ++t) {
      std::memcpy(out + (c * frames + t) * plane,
                  stored + (c * stored_frames + start + t * stride) * plane,
                  static_cast<size_t>(plane));
    }
  }
}

}  // namespace m3ret::data
