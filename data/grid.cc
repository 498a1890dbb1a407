#include "data/grid.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <itkBinShrinkImageFilter.h>
#include <itkDiscreteGaussianImageFilter.h>
#include <itkIdentityTransform.h>
#include <itkLinearInterpolateImageFunction.h>
#include <itkResampleImageFilter.h>

#include "core/error.h"

namespace m3ret::data::grid {

namespace {

constexpr double kMaxVoxels = 2048.0 * 2048.0 * 2048.0;

Volume::Pointer resample(const Volume* in, const Volume::SizeType& size,
                         const Volume::SpacingType& spacing, const Volume::PointType& origin,
                         const Volume::DirectionType& direction, float pad) {
  using Filter = itk::ResampleImageFilter<Volume, Volume, double>;
  auto f = Filter::New();
  f->SetInput(in);
  f->SetTransform(itk::IdentityTransform<double, 3>::New());
  f->SetInterpolator(itk::LinearInterpolateImageFunction<Volume, double>::New());
  f->SetSize(size);
  f->SetOutputSpacing(spacing);
  f->SetOutputOrigin(origin);
  f->SetOutputDirection(direction);
  f->SetDefaultPixelValue(pad);
  f->SetNumberOfWorkUnits(1);
  f->Update();
  Volume::Pointer out = f->GetOutput();
  out->DisconnectPipeline();
  return out;
}

}  // namespace

Volume::Pointer resample_canonical(const std::filesystem::path& path, const Volume* in,
                                   const std::array<double, 3>& spacing, float pad) {
  const auto sp = in->GetSpacing();
  const auto size = in->GetLargestPossibleRegion().GetSize();
  for (int k = 0; k < 3; ++k) {
    if (!(sp[k] > 1e-6) || !std::isfinite(sp[k]) || sp[k] > 1e4) {
      throw InputError(path.string(),
                       fmt::format("absurd voxel spacing {} x {} x {} mm", sp[0], sp[1], sp[2]));
    }
  }
  // Physical bounding box over the 8 corners of the voxel grid (voxel edges).
  double lo[3], hi[3];
  for (int k = 0; k < 3; ++k) {
    lo[k] = std::numeric_limits<double>::max();
    hi[k] = std::numeric_limits<double>::lowest();
  }
  for (int corner = 0; corner < 8; ++corner) {
    itk::ContinuousIndex<double, 3> idx;
    for (int k = 0; k < 3; ++k) idx[k] = (corner >> k & 1) ? size[k] - 0.5 : -0.5;
    Volume::PointType p;
    in->TransformContinuousIndexToPhysicalPoint(idx, p);
    for (int k = 0; k < 3; ++k) {
      lo[k] = std::min(lo[k], p[k]);
      hi[k] = std::max(hi[k], p[k]);
    }
  }
  Volume::SizeType out_size;
  Volume::SpacingType out_sp;
  Volume::PointType out_origin;
  double voxels = 1;
  for (int k = 0; k < 3; ++k) {
    out_sp[k] = spacing[k];
    const double n = std::max(1.0, std::round((hi[k] - lo[k]) / spacing[k]));
    voxels *= n;
    out_size[k] = static_cast<itk::SizeValueType>(n);
    const double centre = 0.5 * (lo[k] + hi[k]);
    out_origin[k] = centre - 0.5 * (n - 1) * spacing[k];
  }
  if (voxels > kMaxVoxels) {
    throw InputError(path.string(),
                     fmt::format("absurd size after resampling to {} mm: {}x{}x{}",
                                 fmt::join(spacing, "x"), out_size[0], out_size[1], out_size[2]));
  }
  Volume::DirectionType identity;
  identity.SetIdentity();
  return resample(in, out_size, out_sp, out_origin, identity, pad);
}

Volume::Pointer fit(const Volume* in, int64_t width, int64_t height, int64_t depth, bool crop,
                    float pad) {
  const auto sp = in->GetSpacing();
  const auto size = in->GetLargestPossibleRegion().GetSize();
  const double ex = size[0] * sp[0], ey = size[1] * sp[1], ez = size[2] * sp[2];
  const double s = crop ? std::min(ex / width, ey / height) : std::max(ex / width, ey / height);
  const double out_sp[3] = {s, s, ez / depth};
  const int64_t out_n[3] = {width, height, depth};

  // Anti-aliasing: integer bin averaging down to within 2x of the target,
  // then a Gaussian for the rest (sigma = half the remaining spacing gap).
  Volume::ConstPointer src = in;
  Volume::Pointer shrunk;
  itk::BinShrinkImageFilter<Volume, Volume>::ShrinkFactorsType factors;
  bool any_bin = false;
  for (int k = 0; k < 3; ++k) {
    factors[k] = std::max(1u, static_cast<unsigned>(std::floor(out_sp[k] / sp[k] / 2.0)));
    factors[k] = std::min<unsigned>(factors[k], static_cast<unsigned>(size[k]));
    any_bin |= factors[k] > 1;
  }
  if (any_bin) {
    auto bin = itk::BinShrinkImageFilter<Volume, Volume>::New();
    bin->SetInput(src);
    bin->SetShrinkFactors(factors);
    bin->SetNumberOfWorkUnits(1);
    bin->Update();
    shrunk = bin->GetOutput();
    shrunk->DisconnectPipeline();
    src = shrunk;
  }
  const auto sp2 = src->GetSpacing();
  const auto size2 = src->GetLargestPossibleRegion().GetSize();
  itk::FixedArray<double, 3> variance;
  bool any_blur = false;
  for (int k = 0; k < 3; ++k) {
    const double gap = out_sp[k] * out_sp[k] - sp2[k] * sp2[k];
    variance[k] = (gap > 1e-12 && size2[k] > 1) ? gap / 4.0 : 0.0;
    any_blur |= variance[k] > 0;
  }
  Volume::Pointer blurred;
  if (any_blur) {
    auto g = itk::DiscreteGaussianImageFilter<Volume, Volume>::New();
    g->SetInput(src);
    g->SetVariance(variance);
    g->SetUseImageSpacing(true);
    g->SetMaximumKernelWidth(64);
    g->SetNumberOfWorkUnits(1);
    g->Update();
    blurred = g->GetOutput();
    blurred->DisconnectPipeline();
    src = blurred;
  }

  Volume::SizeType out_size;
  Volume::SpacingType spacing;
  Volume::PointType origin;
  const auto in_origin = in->GetOrigin();
  for (int k = 0; k < 3; ++k) {
    out_size[k] = static_cast<itk::SizeValueType>(out_n[k]);
    spacing[k] = out_sp[k];
    const double centre = in_origin[k] + 0.5 * (size[k] - 1) * sp[k];
    origin[k] = centre - 0.5 * (out_n[k] - 1) * out_sp[k];
  }
  // A single slice/pixel thick axis has no neighbour to interpolate with:
  // keep its coordinate exactly on the input's voxel centre.
  for (int k = 0; k < 3; ++k) {
    if (size[k] == 1 && out_n[k] == 1) origin[k] = in_origin[k];
  }
  return resample(src.GetPointer(), out_size, spacing, origin, in->GetDirection(), pad);
}

void append_u8(const Volume* in, double lo, double hi, std::vector<uint8_t>& out) {
  const float* p = in->GetBufferPointer();
  const size_t n = in->GetLargestPossibleRegion().GetNumberOfPixels();
  const double scale = 255.0 / (hi - lo);
  out.reserve(out.size() + n);
  for (size_t i = 0; i < n; ++i) {
    double v = (p[i] - lo) * scale;
    v = std::clamp(v, 0.0, 255.0);
    out.push_back(static_cast<uint8_t>(std::lround(v)));
  }
}

std::array<double, 2> min_max(const Volume* in) {
  const float* p = in->GetBufferPointer();
  const size_t n = in->GetLargestPossibleRegion().GetNumberOfPixels();
  auto [a, b] = std::minmax_element(p, p + n);
  return {*a, *b};
}

std::vector<double> percentiles(const Volume* in, const std::vector<double>& ps) {
  const float* p = in->GetBufferPointer();
  const size_t n = in->GetLargestPossibleRegion().GetNumberOfPixels();
  std::vector<float> v(p, p + n);
  std::vector<double> out;
  for (double q : ps) {
    // Linear interpolation between order statistics (numpy's default).
    const double pos = std::clamp(q, 0.0, 100.0) / 100.0 * (n - 1);
    const size_t i = static_cast<size_t>(std::floor(pos));
    std::nth_element(v.begin(), v.begin() + i, v.end());
    double a = v[i];
    double b = a;
    if (i + 1 < n) b = *std::min_element(v.begin() + i + 1, v.end());
    out.push_back(a + (pos - i) * (b - a));
  }
  return out;
}

void flatten_geometry(Volume* in) {
  Volume::DirectionType identity;
  identity.SetIdentity();
  in->SetDirection(identity);
  Volume::PointType origin;
  origin.Fill(0.0);
  in->SetOrigin(origin);
  auto sp = in->GetSpacing();
  for (int k = 0; k < 2; ++k) {
    if (!(sp[k] > 1e-6) || !std::isfinite(sp[k])) sp[k] = 1.0;
  }
  sp[2] = 1.0;
  in->SetSpacing(sp);
}

}  // namespace m3ret::data::grid
