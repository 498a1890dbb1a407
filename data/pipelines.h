// Per-modality preprocessing pipelines (internal to data/): decoded input ->
// uint8 [C, T, H, W] with the fixed shapes of data/preprocess.h.
// All throw m3ret::InputError(path, reason); all are thread-safe.
#pragma once

#include <filesystem>

#include "data/preprocess.h"
#include "data/sample.h"

namespace m3ret::data::pipeline {

// Refuses a DICOM input whose Modality tag names another m3ret modality than
// the manifest's (e.g. a CT series listed as xray); "other" accepts anything,
// and codes without an m3ret modality (OT, SC, ...) pass.
void check_dicom_modality(const std::filesystem::path& path, const std::string& dicom_code,
                          const std::string& modality);

// xray, ultrasound, other: a 2D image -> [1, 1, S, S] grey, or [3, 1, S, S]
// when the modality is in cfg.rgb_modalities.
void grey_image(const std::filesystem::path& path, const PreprocessConfig& cfg, Sample& s);
// endoscopy: a video -> its centre clip [3, T, S, S] (T = video_frames at
// video_frame_stride of the F = video_stored_frames frames sampled uniformly
// in time), or all of them [3, F, S, S] when cfg.stored_video; a still image
// (grey or RGB) is an image [3, 1, S, S] (grey replicated to RGB), stored or not.
void endoscopy(const std::filesystem::path& path, const PreprocessConfig& cfg, Sample& s);
// ct, mri: a 3D volume (file or DICOM series folder) -> [1, D, V, V].
void volume(const std::filesystem::path& path, const std::string& modality,
            const PreprocessConfig& cfg, Sample& s);

}  // namespace m3ret::data::pipeline
