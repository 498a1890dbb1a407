// 2D images and videos: grey_image() and endoscopy().
#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"
#include "data/dicom.h"
#include "data/grid.h"
#include "data/itk_image.h"
#include "data/pipelines.h"
#include "data/video_reader.h"

namespace m3ret::data::pipeline {

namespace stdfs = std::filesystem;

namespace {

// Reads a 2D image; returns its channels with flat geometry and the intensity
// range to map to [0, 255]: [0, 255] for 8-bit files, else [min, max] over all
// channels. (MONOCHROME1 DICOM arrives already inverted to MONOCHROME2 by
// GDCM inside ITK's reader: bright means dense; see itkio::Decoded.)
itkio::Decoded read_2d(const stdfs::path& path, const std::string& modality, int64_t max_pixels,
                       std::array<double, 2>& range) {
  itkio::Decoded d = itkio::read(path, max_pixels);
  check_dicom_modality(path, d.dicom_modality, modality);
  if (d.dims != 2) {
    const auto size = d.channels[0]->GetLargestPossibleRegion().GetSize();
    throw InputError(path.string(), fmt::format("{}D image ({}x{}x{}) where a 2D image is expected",
                                                d.dims, size[0], size[1], size[2]));
  }
  double lo = 1e300, hi = -1e300;
  for (auto& ch : d.channels) {
    grid::flatten_geometry(ch);
    auto mm = grid::min_max(ch);
    lo = std::min(lo, mm[0]);
    hi = std::max(hi, mm[1]);
  }
  if (!(hi > lo))
    throw InputError(path.string(), fmt::format("constant image (all values {})", lo));
  range = d.eight_bit ? std::array<double, 2>{0.0, 255.0} : std::array<double, 2>{lo, hi};
  return d;
}

// The 3 channels of a 2D image (grey replicated), fitted into S x S: [3][S][S].
std::vector<uint8_t> rgb_planes(const itkio::Decoded& d, const std::array<double, 2>& range,
                                int64_t S, bool crop) {
  std::vector<uint8_t> planes;
  for (size_t c = 0; c < 3; ++c) {
    const auto& ch = d.channels[d.channels.size() == 3 ? c : 0];
    auto fitted = grid::fit(ch, S, S, 1, crop, static_cast<float>(range[0]));
    grid::append_u8(fitted, range[0], range[1], planes);
  }
  return planes;
}

}  // namespace

void check_dicom_modality(const stdfs::path& path, const std::string& dicom_code,
                          const std::string& modality) {
  if (dicom_code.empty() || modality == "other") return;
  const std::string says = dicom::modality_for(dicom_code);
  if (!says.empty() && says != modality) {
    throw InputError(path.string(),
                     fmt::format("mislabelled: DICOM Modality '{}' is {}, the manifest says {}",
                                 dicom_code, says, modality));
  }
}

void grey_image(const stdfs::path& path, const PreprocessConfig& cfg, Sample& s) {
  if (video::is_video_path(path)) {
    throw InputError(path.string(),
                     fmt::format("a video where a 2D {} image is expected", s.modality));
  }
  std::array<double, 2> range{};
  itkio::Decoded d = read_2d(path, s.modality, cfg.max_input_pixels, range);
  const int64_t S = cfg.image_size;
  const auto& rgb = cfg.rgb_modalities;
  if (std::find(rgb.begin(), rgb.end(), s.modality) != rgb.end()) {  // kept in colour
    s.pixels = rgb_planes(d, range, S, cfg.resize == "crop");
    s.C = 3, s.T = 1, s.H = S, s.W = S;
    return;
  }
  itkio::Volume::Pointer grey = d.channels[0];
  if (d.channels.size() == 3) {  // ITU-R BT.601 luma
    const float* r = d.channels[0]->GetBufferPointer();
    const float* g = d.channels[1]->GetBufferPointer();
    const float* b = d.channels[2]->GetBufferPointer();
    const size_t n = grey->GetLargestPossibleRegion().GetNumberOfPixels();
    auto y = itkio::Volume::New();
    y->CopyInformation(grey);
    y->SetRegions(grey->GetLargestPossibleRegion());
    y->Allocate();
    float* out = y->GetBufferPointer();
    for (size_t i = 0; i < n; ++i) out[i] = 0.299f * r[i] + 0.587f * g[i] + 0.114f * b[i];
    grey = y;
  }
  auto fitted = grid::fit(grey, S, S, 1, cfg.resize == "crop", static_cast<float>(range[0]));
  s.pixels.clear();
  grid::append_u8(fitted, range[0], range[1], s.pixels);
  s.C = 1, s.T = 1, s.H = S, s.W = S;
}

void endoscopy(const stdfs::path& path, const PreprocessConfig& cfg, Sample& s) {
  cfg.validate();  // a clip that does not fit the stored frames is a config error naming the keys
  const int64_t S = cfg.image_size;
  const bool crop = cfg.resize == "crop";
  int64_t T = 1;  // a still image is one frame
  if (video::is_video_path(path)) {
    const int64_t F = cfg.video_stored_frames;
    T = cfg.stored_video ? F : cfg.video_frames;
    s.pixels = video::read(path, F, S, crop, {cfg.max_input_pixels, cfg.max_video_frames});
    if (!cfg.stored_video) {  // the centre clip of the stored frames
      std::vector<uint8_t> clip(static_cast<size_t>(3 * T * S * S));
      copy_clip(s.pixels.data(), 3, F, S * S, centre_clip_start(F, T, cfg.video_frame_stride), T,
                cfg.video_frame_stride, clip.data());
      s.pixels = std::move(clip);
    }
  } else {
    std::array<double, 2> range{};
    itkio::Decoded d = read_2d(path, s.modality, cfg.max_input_pixels, range);
    s.pixels = rgb_planes(d, range, S, crop);  // [3][S][S]: grey replicated
  }
  const auto [lo, hi] = std::minmax_element(s.pixels.begin(), s.pixels.end());
  if (*lo == *hi)
    throw InputError(path.string(), fmt::format("constant frames (all values {})", *lo));
  s.C = 3, s.T = T, s.H = S, s.W = S;
}

}  // namespace m3ret::data::pipeline
