// Writers of test inputs through ITK (the tests build their own files).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <itkImage.h>
#include <itkRGBPixel.h>

#include "data/manifest.h"
#include "data/preprocess.h"

namespace m3ret::data::testutil {

// A 3D volume of type T, size (x, y, z), spacing in mm, optional direction
// (row-major 3x3) and origin (mm, the first voxel centre) written to `path` (format from the extension).
template <class T>
void write_volume(const std::filesystem::path& path, const std::vector<T>& values,
                  std::array<size_t, 3> size, std::array<double, 3> spacing = {1, 1, 1},
                  std::array<double, 9> direction = {1, 0, 0, 0, 1, 0, 0, 0, 1},
                  std::array<double, 3> origin = {0, 0, 0});

// A 2D grey image of type T (width x height, row-major) to `path`.
template <class T>
void write_image(const std::filesystem::path& path, const std::vector<T>& values, size_t width,
                 size_t height);

// A 2D RGB uint8 image (interleaved, row-major) to `path`.
void write_rgb(const std::filesystem::path& path, const std::vector<uint8_t>& rgb, size_t width,
               size_t height);

// A 2D uint16 DICOM file with the given Modality tag, plus any other tags
// ("gggg|eeee" -> value).
void write_dicom(const std::filesystem::path& path, const std::vector<uint16_t>& values,
                 size_t width, size_t height, const std::string& modality,
                 const std::vector<std::pair<std::string, std::string>>& tags = {});

// A CT DICOM series: one file per slice in `dir` holding `hu` (int16,
// [z][y][x]) with Rescale Intercept `intercept` and Slope 1 (ITK's GDCM
// writer stores hu - intercept: checked by hand with gdcmraw), slices 2.5 mm
// apart, written in reverse order so that ordering must come from the Image
// Position (Patient) tags. `series` is the SeriesInstanceUID, `prefix` the
// start of the file names (so that two series can share a folder), `patient`
// the PatientID. flip_x stores the same anatomy with rows running right to left
// (Image Orientation (Patient) -1\0\0\0\1\0).
void write_ct_series(const std::filesystem::path& dir, const std::vector<int16_t>& hu,
                     std::array<size_t, 3> size, double intercept,
                     const std::string& series = "1.2.826.0.1.3680043.2.1125.1.2",
                     const std::string& prefix = "IM", const std::string& patient = "P1",
                     bool flip_x = false);

// Small preprocessing for tests: S = 32, V = 16, D = 8, F = 4, 2 mm spacing.
PreprocessConfig small_cfg();

// The manifest row for a file.
ManifestRow row(const std::filesystem::path& path, const std::string& modality);

}  // namespace m3ret::data::testutil
