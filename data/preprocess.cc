#include "data/preprocess.h"

#include <fmt/format.h>

#include "data/sample.h"
#include "data/video_reader.h"

namespace m3ret::data {

std::string sample_group(const std::string& modality, const std::filesystem::path& path) {
  return modality == "endoscopy" && !video::is_video_path(path) ? kEndoscopyImages : modality;
}

void PreprocessConfig::validate() const {
  auto pair = [](const char* key, const std::vector<double>& v) {
    if (v.size() != 2 || !(v[0] < v[1])) {
      throw config::Error(
          fmt::format("config key 'preprocess.{}' must be [lo, hi] with lo < hi, got [{}]", key,
                      fmt::join(v, ", ")));
    }
  };
  pair("ct_window", ct_window);
  pair("mri_percentiles", mri_percentiles);
  for (const auto& m : rgb_modalities) {
    if (m != "xray" && m != "ultrasound" && m != "other") {
      throw config::Error(
          fmt::format("config key 'preprocess.rgb_modalities': '{}' is not a 2D grey modality "
                      "(xray, ultrasound, other)",
                      m));
    }
  }
  if (ct_spacing.size() != 3) {
    throw config::Error(
        fmt::format("config key 'preprocess.ct_spacing' must be [x, y, z] in mm, got [{}]",
                    fmt::join(ct_spacing, ", ")));
  }
  const int64_t span = (video_frames - 1) * video_frame_stride + 1;
  if (video_stored_frames < span) {
    throw config::Error(
        fmt::format("config key 'preprocess.video_stored_frames' = {} is too small for a clip of "
                    "video_frames = {} "
                    "at video_frame_stride = {}: it needs at least {} stored frames",
                    video_stored_frames, video_frames, video_frame_stride, span));
  }
}

}  // namespace m3ret::data
