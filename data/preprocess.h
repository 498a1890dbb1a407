// Preprocessing to the unified sample (see docs/data.md for the full rules).
//
// Every modality comes out with a FIXED shape, so that shards can rely on it:
//   xray, ultrasound, other 2D : uint8 [1, 1, S, S]        S = image_size
//                                ([3, 1, S, S] for those in rgb_modalities:
//                                RGB kept, grey replicated)
//   endoscopy video            : uint8 [3, T, S, S]        T = video_frames: a clip of
//                                T frames at stride video_frame_stride out of the
//                                F = video_stored_frames frames sampled uniformly
//                                in time (the centre clip; shards store all F,
//                                see stored_video below)
//   endoscopy still image      : uint8 [3, 1, S, S]        an image (grey replicated to RGB);
//                                stored and fed as one frame, in the sample group
//                                kEndoscopyImages (data/sample.h)
//   ct, mri                    : uint8 [1, D, V, V]        D = volume_slices, V = volume_size
// 2D images and video frames: aspect ratio kept, then padded to S x S
// (resize = "pad") or the centre square cropped (resize = "crop").
// CT: Hounsfield units; resampled (linear, ITK) onto an axis-aligned grid of
// ct_spacing mm (canonical orientation: identity direction), fitted to
// D x V x V (in-plane: the pad/crop rule; through-plane: resized to D), then
// the window [lo, hi] mapped to [0, 255].
// MRI: the same geometry; the per-volume percentiles [p_lo, p_hi] of the
// original voxels mapped to [0, 255].
// Full rules and rationale: docs/data.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/config.h"

namespace m3ret::data {

// Input size limits (generous defaults; docs/data.md): a 512 x 512 CT of 2048
// slices is 2^29 voxels; 200000 frames are 1 h 51 min at 30 frames/s.
inline constexpr int64_t kDefaultMaxInputPixels = int64_t{1} << 29;
inline constexpr int64_t kDefaultMaxVideoFrames = 200000;
// The cap on preprocess.video_stored_frames: frames stored per video at shard
// time (256 RGB frames of 224 x 224 are 38.5 MB per video before deflate).
inline constexpr int64_t kMaxStoredVideoFrames = 256;

// The sample group (data/sample.h) of a manifest row, known before decoding:
// kEndoscopyImages for an endoscopy row that is not a video file (by its
// extension, as the reader decides), else the modality.
std::string sample_group(const std::string& modality, const std::filesystem::path& path);

struct PreprocessConfig {
  int64_t image_size = 64;           // S: side of 2D images and video frames (pixels)
  std::string resize = "pad";        // "pad": keep aspect + zero-pad; "crop": centre crop
  int64_t video_frames = 8;          // T: frames of a clip (what the model sees)
  int64_t video_frame_stride = 2;    // s: stored frames between two frames of a clip
  int64_t video_stored_frames = 32;  // F: frames stored per video, uniform in time
  int64_t volume_size = 64;          // V: in-plane side of CT/MRI volumes (H = W)
  int64_t volume_slices = 16;        // D: slices of CT/MRI volumes
  std::vector<double> ct_window = {-1000.0, 1000.0};  // HU mapped to [0, 255]
  std::vector<double> ct_spacing = {1.5, 1.5, 3.0};   // mm (x, y, z) before resizing
  std::vector<double> mri_percentiles = {1.0, 99.0};  // percentiles mapped to [0, 255]
  std::vector<std::string> rgb_modalities = {};       // 2D modalities kept in colour (C = 3)
  int64_t max_input_pixels = kDefaultMaxInputPixels;  // per image / volume / video frame
  int64_t max_video_frames = kDefaultMaxVideoFrames;  // per video
  int64_t decode_timeout_s = 120;   // DICOM decoding runs in a child process: its time limit
  int64_t decode_memory_mb = 8192;  // and its memory limit
  // Not a config key: true makes the endoscopy pipeline return all F stored
  // frames of a video ([3, F, S, S], what the sharder stores) instead of its
  // centre clip. The sharder sets it; everything else sees clips.
  bool stored_video = false;

  template <class V>
  void visit(V& v) {
    v("image_size", image_size, "side S of 2D images and video frames (pixels)",
      config::Range{8, 4096});
    v("resize", resize, "2D resize rule: keep aspect and pad, or centre crop",
      config::OneOf{{"pad", "crop"}});
    v("video_frames", video_frames,
      "frames T of a video clip (a new clip of the stored frames each time training draws the "
      "video; the centre clip for embedding)",
      config::Range{1, kMaxStoredVideoFrames});
    v("video_frame_stride", video_frame_stride,
      "stride between the frames of a clip, in stored frames",
      config::Range{1, kMaxStoredVideoFrames});
    v("video_stored_frames", video_stored_frames,
      "frames F stored per video at shard time, sampled uniformly in time over the whole video "
      "(at least (video_frames - 1) * video_frame_stride + 1)",
      config::Range{1, kMaxStoredVideoFrames});
    v("volume_size", volume_size, "in-plane side V of CT/MRI volumes (voxels)",
      config::Range{8, 2048});
    v("volume_slices", volume_slices, "slices D of CT/MRI volumes", config::Range{1, 2048});
    v("ct_window", ct_window, "CT window [lo, hi] in HU, mapped to [0, 255]",
      config::Range{-1e5, 1e5});
    v("ct_spacing", ct_spacing, "CT/MRI resampling spacing [x, y, z] in mm",
      config::Range{0.01, 100});
    v("mri_percentiles", mri_percentiles, "MRI intensity percentiles [lo, hi] -> [0, 255]",
      config::Range{0, 100});
    v("rgb_modalities", rgb_modalities,
      "2D modalities kept in RGB, C = 3 (any of xray, ultrasound, other; endoscopy always is)");
    v("max_input_pixels", max_input_pixels,
      "inputs whose header promises more pixels (2D: W*H, volume: W*H*D, video: W*H per frame) "
      "are refused before decoding",
      config::Range{1, 1e13});
    v("max_video_frames", max_video_frames,
      "videos with more frames (declared, or counted from packets before decoding) are refused",
      config::Range{1, 1e10});
    v("decode_timeout_s", decode_timeout_s,
      "DICOM inputs are decoded in a child process; one that takes longer is stopped and its row "
      "rejected (seconds)",
      config::Range{1, 86400});
    v("decode_memory_mb", decode_memory_mb,
      "memory a DICOM decoder child may allocate beyond the parent's; more rejects the row (MB)",
      config::Range{64, 1e7});
  }
  // Throws config::Error naming the key: window/percentile pairs must have 2
  // increasing values, ct_spacing 3 values, rgb_modalities only 2D modalities,
  // video_stored_frames >= (video_frames - 1) * video_frame_stride + 1.
  void validate() const;
};

}  // namespace m3ret::data
