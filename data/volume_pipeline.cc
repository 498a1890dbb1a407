// CT and MRI volumes: volume().
#include <fmt/format.h>

#include "core/error.h"
#include "data/grid.h"
#include "data/itk_image.h"
#include "data/pipelines.h"
#include "data/video_reader.h"

namespace m3ret::data::pipeline {

namespace stdfs = std::filesystem;

namespace {
constexpr float kAirHU = -1024.0f;  // fills CT voxels outside the scanned field
}

void volume(const stdfs::path& path, const std::string& modality, const PreprocessConfig& cfg,
            Sample& s) {
  if (video::is_video_path(path)) {
    throw InputError(path.string(),
                     fmt::format("a video where a 3D {} volume is expected", modality));
  }
  itkio::Decoded d = itkio::read(path, cfg.max_input_pixels);
  check_dicom_modality(path, d.dicom_modality, modality);
  const auto size = d.channels[0]->GetLargestPossibleRegion().GetSize();
  if (d.dims != 3) {
    throw InputError(path.string(), fmt::format("2D image ({}x{}) where a 3D {} volume is expected",
                                                size[0], size[1], modality));
  }
  if (d.channels.size() != 1) {
    throw InputError(path.string(),
                     fmt::format("{}-channel volume where a scalar {} volume is expected",
                                 d.channels.size(), modality));
  }
  itkio::Volume::Pointer vol = d.channels[0];
  const auto mm = grid::min_max(vol);
  if (!(mm[1] > mm[0])) {
    throw InputError(path.string(), fmt::format("constant volume (all values {})", mm[0]));
  }
  const bool is_ct = modality == "ct";
  double lo, hi;
  float pad;
  if (is_ct) {
    lo = cfg.ct_window[0], hi = cfg.ct_window[1];
    pad = kAirHU;
  } else {  // per-volume percentile normalisation, on the original voxels
    auto p = grid::percentiles(vol, cfg.mri_percentiles);
    lo = p[0], hi = p[1];
    if (!(hi > lo)) {
      throw InputError(path.string(),
                       fmt::format("percentiles {} and {} are equal ({}): nearly constant",
                                   cfg.mri_percentiles[0], cfg.mri_percentiles[1], lo));
    }
    pad = static_cast<float>(mm[0]);
  }
  const std::array<double, 3> spacing = {cfg.ct_spacing[0], cfg.ct_spacing[1], cfg.ct_spacing[2]};
  auto canonical = grid::resample_canonical(path, vol, spacing, pad);
  const int64_t V = cfg.volume_size, D = cfg.volume_slices;
  auto fitted = grid::fit(canonical, V, V, D, cfg.resize == "crop", pad);
  s.pixels.clear();
  grid::append_u8(fitted, lo, hi, s.pixels);
  s.C = 1, s.T = D, s.H = V, s.W = V;
}

}  // namespace m3ret::data::pipeline
