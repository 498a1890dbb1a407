// Per-modality rendering of a synthetic anatomy into a real file (internal to
// data/). Every function writes `path` through a temporary sibling (never a
// partial file under `path`) and throws m3ret::Error naming the path.
#pragma once

#include <filesystem>

#include "data/synth.h"
#include "data/synth_anatomy.h"

namespace m3ret::data::synth {

// CT: int16 HU NIfTI (.nii.gz), volume_size^2 x volume_slices, spacing 2 x 2 x 2.5 mm.
void write_ct(const Anatomy& a, const SynthConfig& cfg, Rng& rng,
              const std::filesystem::path& path);
// MRI: float32 NIfTI, T2-like contrast (fluid bright, lung dark), bias field, Rician noise.
void write_mri(const Anatomy& a, const SynthConfig& cfg, Rng& rng,
               const std::filesystem::path& path);
// X-ray: a frontal (AP) projection of the attenuation, uint16 DICOM (Modality DX).
void write_xray(const Anatomy& a, const SynthConfig& cfg, Rng& rng,
                const std::filesystem::path& path, const std::string& patient_id);
// Ultrasound: an axial slice through the finding, sector-shaped, with
// multiplicative speckle and depth attenuation; 8-bit grey PNG.
void write_ultrasound(const Anatomy& a, const SynthConfig& cfg, Rng& rng,
                      const std::filesystem::path& path);
// Endoscopy: an RGB tissue scene with the finding as a coloured bump that
// drifts over the frames; MP4 (libx264, else mpeg4).
void write_endoscopy(const Anatomy& a, const SynthConfig& cfg, Rng& rng,
                     const std::filesystem::path& path);

}  // namespace m3ret::data::synth
