// Geometry and intensity steps of preprocessing (internal to data/), on ITK
// float volumes (x fastest, then y, then z; 2D images have z size 1).
// All functions are pure (new outputs, inputs untouched) and single-threaded.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "data/itk_image.h"

namespace m3ret::data::grid {

using itkio::Volume;

// Canonical orientation + target spacing: resamples `in` (any direction
// cosines) with linear interpolation onto an axis-aligned grid (identity
// direction, i.e. LPS-ordered axes) of `spacing` mm covering the input's
// physical bounding box. Outside values are `pad`. Throws InputError(path)
// for non-positive/non-finite spacing or an absurd resulting size.
Volume::Pointer resample_canonical(const std::filesystem::path& path, const Volume* in,
                                   const std::array<double, 3>& spacing, float pad);

// Fits `in` (identity direction) into a width x height x depth grid centred on
// the input: in-plane the aspect ratio is kept and the whole field of view
// fitted with `pad` around it (crop = false), or the largest centred square
// filled (crop = true); through-plane the extent is resized to `depth`.
// Downsampling is anti-aliased (bin averaging, then a Gaussian), then linear.
Volume::Pointer fit(const Volume* in, int64_t width, int64_t height, int64_t depth, bool crop,
                    float pad);

// Appends round(clamp((v - lo) / (hi - lo), 0, 1) * 255) for every voxel
// (z, y, x order) to `out`. Requires hi > lo.
void append_u8(const Volume* in, double lo, double hi, std::vector<uint8_t>& out);

// min and max over the voxels.
std::array<double, 2> min_max(const Volume* in);

// The p-th percentiles (0..100) of the voxel values, for each p in `ps`.
std::vector<double> percentiles(const Volume* in, const std::vector<double>& ps);

// Resets the geometry of a 2D image to identity direction and zero origin,
// keeping the in-plane spacing (z spacing 1).
void flatten_geometry(Volume* in);

}  // namespace m3ret::data::grid
