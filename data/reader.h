// Reading one manifest row into the unified sample.
//
// Decoding goes through ITK (NIfTI .nii/.nii.gz, NRRD, MetaImage .mha/.mhd,
// PNG, JPEG, TIFF, BMP, DICOM files, DICOM series folders via GDCM) and FFmpeg
// (MP4, AVI, MKV, WebM, MOV: any codec libavcodec decodes). Preprocessing
// follows data/preprocess.h and docs/data.md.
#pragma once

#include <filesystem>

#include "data/manifest.h"
#include "data/preprocess.h"
#include "data/sample.h"

namespace m3ret::data {

// Reads and preprocesses `row.path` (absolute, or relative to manifest_dir)
// according to `row.modality`; fills id = sample_id(row, manifest_dir),
// labels/group/split from the row and source = the path.
// Returns a Sample with the fixed shape of its modality (data/preprocess.h).
// Throws m3ret::InputError(path, reason) for anything unusable: missing,
// empty, corrupt or truncated files, NaN/Inf values, a constant image, the
// wrong dimensionality for the modality (e.g. 2D for ct, 4D anywhere).
// Thread-safe: may be called concurrently from several threads; each call
// runs on the calling thread only (ITK filters and FFmpeg decoders are
// single-threaded here), so callers parallelise across samples.
Sample read_sample(const ManifestRow& row, const std::filesystem::path& manifest_dir,
                   const PreprocessConfig& cfg);

}  // namespace m3ret::data
