#include "data/synth_render.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include <unistd.h>

#include <fmt/format.h>
#include <itkGDCMImageIO.h>
#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkMetaDataObject.h>

#include "core/error.h"
#include "core/fs.h"
#include "data/isolate.h"
#include "data/itk_image.h"
#include "data/video_writer.h"

namespace m3ret::data::synth {

namespace stdfs = std::filesystem;

namespace {

std::atomic<int> g_counter{0};

// Writes an ITK image through a temporary sibling that keeps the extension
// (ITK picks the format from it), then renames it.
template <class Image>
void write_itk(const typename Image::Pointer& img, const stdfs::path& path,
               itk::ImageIOBase* io = nullptr) {
  itkio::register_factories();
  stdfs::create_directories(path.parent_path());
  const stdfs::path tmp = path.parent_path() / fmt::format(".tmp-{}-{}-{}", ::getpid(), g_counter++,
                                                           path.filename().string());
  isolate::LibraryScope scope;
  auto writer = itk::ImageFileWriter<Image>::New();
  writer->SetInput(img);
  writer->SetFileName(tmp.string());
  if (io) writer->SetImageIO(io);
  writer->SetUseCompression(true);
  try {
    writer->Update();
  } catch (const itk::ExceptionObject& e) {
    std::error_code ec;
    stdfs::remove(tmp, ec);
    throw Error(fmt::format("cannot write {}: {}", path.string(), e.GetDescription()));
  }
  fs::commit(tmp, path);
}

template <class T>
typename itk::Image<T, 3>::Pointer new_volume(int64_t n, int64_t slices) {
  auto img = itk::Image<T, 3>::New();
  typename itk::Image<T, 3>::SizeType size = {{static_cast<itk::SizeValueType>(n),
                                               static_cast<itk::SizeValueType>(n),
                                               static_cast<itk::SizeValueType>(slices)}};
  img->SetRegions(size);
  typename itk::Image<T, 3>::SpacingType sp;
  sp[0] = 2.0, sp[1] = 2.0, sp[2] = 2.5;
  img->SetSpacing(sp);
  img->Allocate();
  return img;
}

// Normalised coordinate of voxel i of n: centres in [-1, 1].
double coord(int64_t i, int64_t n) { return (i + 0.5) / n * 2.0 - 1.0; }

double ct_hu(Tissue t, const Anatomy& a) {
  const double lung = -820;
  switch (t) {
    case Tissue::air:
      return -1000;
    case Tissue::soft:
      return 40;
    case Tissue::lung:
      return lung;
    case Tissue::bone:
      return 700;
    case Tissue::wall:
      return lung + a.contrast * 900;
    case Tissue::core:
      if (a.finding == Finding::cyst) return -985;
      if (a.finding == Finding::nodule) return lung + a.contrast * 900;
      return lung + a.contrast * 850;  // mass
    // Structural findings: two phases around the same mean for every class.
    case Tissue::lesion_hi:
      return lung + a.contrast * 800;
    case Tissue::lesion_lo:
      return lung + a.contrast * 100;
  }
  return 0;
}

double mri_signal(Tissue t, const Anatomy& a) {
  switch (t) {
    case Tissue::air:
      return 0.0;
    case Tissue::soft:
      return 0.35;
    case Tissue::lung:
      return 0.06;
    case Tissue::bone:
      return 0.15;
    case Tissue::wall:
      return 0.22;
    case Tissue::core:
      if (a.finding == Finding::cyst) return 0.95;  // fluid is bright on T2
      if (a.finding == Finding::nodule) return 0.06 + a.contrast * 0.5;
      return 0.06 + a.contrast * 0.4;
    case Tissue::lesion_hi:
      return 0.06 + a.contrast * 0.3;
    case Tissue::lesion_lo:
      return 0.06 + a.contrast * 0.04;
  }
  return 0;
}

double attenuation(Tissue t, const Anatomy& a) {
  switch (t) {
    case Tissue::air:
      return 0.0;
    case Tissue::soft:
      return 1.0;
    case Tissue::lung:
      return 0.2;
    case Tissue::bone:
      return 1.8;
    case Tissue::wall:
      return 0.2 + a.contrast * 0.9;
    case Tissue::core:
      if (a.finding == Finding::cyst) return 0.02;
      return 0.2 + a.contrast * 0.9;
    case Tissue::lesion_hi:
      return 0.2 + a.contrast * 0.9;
    case Tissue::lesion_lo:
      return 0.2 + a.contrast * 0.15;
  }
  return 0;
}

double echogenicity(Tissue t, const Anatomy& a) {
  switch (t) {
    case Tissue::air:
      return 0.0;
    case Tissue::soft:
      return 0.45;
    case Tissue::lung:
      return 0.3;
    case Tissue::bone:
      return 0.95;
    case Tissue::wall:
      return 0.9;
    case Tissue::core:
      if (a.finding == Finding::cyst) return 0.03;                       // anechoic fluid
      if (a.finding == Finding::nodule) return 0.22 + a.contrast * 0.6;  // hyperechoic
      return 0.16 - a.contrast * 0.06;                                   // hypoechoic mass
    case Tissue::lesion_hi:
      return 0.25 + a.contrast * 0.3;
    case Tissue::lesion_lo:
      return 0.25 - a.contrast * 0.1;
  }
  return 0;
}

}  // namespace

void write_ct(const Anatomy& a, const SynthConfig& cfg, Rng& rng, const stdfs::path& path) {
  const int64_t n = cfg.volume_size, d = cfg.volume_slices;
  auto img = new_volume<int16_t>(n, d);
  int16_t* p = img->GetBufferPointer();
  const double noise = rng.uniform(15, 35);
  const double offset = rng.normal(0, 10);  // scanner calibration
  for (int64_t z = 0; z < d; ++z) {
    for (int64_t y = 0; y < n; ++y) {
      for (int64_t x = 0; x < n; ++x) {
        const Tissue t = a.at(coord(x, n), coord(y, n), coord(z, d));
        double hu = ct_hu(t, a);
        if (t == Tissue::core && a.finding == Finding::mass) hu += rng.normal(0, 60);
        if (t != Tissue::air) hu += offset;
        hu += rng.normal(0, noise);
        *p++ = static_cast<int16_t>(std::clamp(std::lround(hu), -1024L, 3071L));
      }
    }
  }
  write_itk<itk::Image<int16_t, 3>>(img, path);
}

void write_mri(const Anatomy& a, const SynthConfig& cfg, Rng& rng, const stdfs::path& path) {
  const int64_t n = cfg.volume_size, d = cfg.volume_slices;
  auto img = new_volume<float>(n, d);
  float* p = img->GetBufferPointer();
  const double gain = rng.uniform(600, 1400);
  const double bx = rng.uniform(-0.2, 0.2), by = rng.uniform(-0.2, 0.2),
               bz = rng.uniform(-0.2, 0.2);
  const double noise = rng.uniform(0.015, 0.035);
  for (int64_t z = 0; z < d; ++z) {
    for (int64_t y = 0; y < n; ++y) {
      for (int64_t x = 0; x < n; ++x) {
        const double u = coord(x, n), v = coord(y, n), w = coord(z, d);
        const Tissue t = a.at(u, v, w);
        double s = mri_signal(t, a);
        if (t == Tissue::core && a.finding == Finding::mass) s *= rng.uniform(0.8, 1.2);
        s *= 1.0 + bx * u + by * v + bz * w;  // coil bias field
        const double re = s + rng.normal(0, noise), im = rng.normal(0, noise);
        *p++ = static_cast<float>(gain * std::sqrt(re * re + im * im));  // Rician magnitude
      }
    }
  }
  write_itk<itk::Image<float, 3>>(img, path);
}

void write_xray(const Anatomy& anatomy, const SynthConfig& cfg, Rng& rng, const stdfs::path& path,
                const std::string& patient_id) {
  Anatomy a = anatomy;
  a.plane = PatternPlane::frontal;  // a structural pattern faces the beam
  using Image = itk::Image<uint16_t, 2>;
  const int64_t s = cfg.image_size, depth = 64;
  auto img = Image::New();
  Image::SizeType size = {{static_cast<itk::SizeValueType>(s), static_cast<itk::SizeValueType>(s)}};
  img->SetRegions(size);
  Image::SpacingType sp;
  sp.Fill(0.5);
  img->SetSpacing(sp);
  img->Allocate();
  uint16_t* p = img->GetBufferPointer();
  const double k = rng.uniform(1.0, 1.4), gain = rng.uniform(0.85, 1.05);
  for (int64_t row = 0; row < s; ++row) {
    const double z = -coord(row, s);  // superior at the top
    for (int64_t col = 0; col < s; ++col) {
      const double x = coord(col, s);
      double path_len = 0;
      for (int64_t j = 0; j < depth; ++j) path_len += attenuation(a.at(x, coord(j, depth), z), a);
      path_len *= 2.0 / depth;
      double v = gain * (1.0 - std::exp(-k * path_len)) + rng.normal(0, 0.01);
      *p++ = static_cast<uint16_t>(std::lround(4095.0 * std::clamp(v, 0.0, 1.0)));
    }
  }
  auto& dict = img->GetMetaDataDictionary();
  itk::EncapsulateMetaData<std::string>(dict, "0008|0060", "DX");
  itk::EncapsulateMetaData<std::string>(dict, "0010|0020", patient_id);
  itk::EncapsulateMetaData<std::string>(dict, "0010|0010", "SYNTH^" + patient_id);
  itk::EncapsulateMetaData<std::string>(dict, "0028|0004", "MONOCHROME2");
  itk::EncapsulateMetaData<std::string>(dict, "0008|103e", "m3ret synthetic chest AP");
  auto io = itk::GDCMImageIO::New();
  write_itk<Image>(img, path, io);
}

void write_ultrasound(const Anatomy& a, const SynthConfig& cfg, Rng& rng, const stdfs::path& path) {
  using Image = itk::Image<uint8_t, 2>;
  const int64_t s = cfg.image_size;
  auto img = Image::New();
  Image::SizeType size = {{static_cast<itk::SizeValueType>(s), static_cast<itk::SizeValueType>(s)}};
  img->SetRegions(size);
  img->Allocate();
  uint8_t* p = img->GetBufferPointer();
  const double z = a.finding == Finding::none ? rng.uniform(-0.4, 0.4) : a.lz + a.shift_z;
  const double gain = rng.uniform(0.8, 1.2), half_angle = rng.uniform(0.6, 0.75);
  const double apex_y = -1.15;
  std::vector<double> speckle(static_cast<size_t>(s * s));
  for (auto& v : speckle) {  // fully developed speckle: exponential intensity
    const double re = rng.normal(), im = rng.normal();
    v = 0.5 * (re * re + im * im);
  }
  for (int64_t row = 0; row < s; ++row) {
    const double y = coord(row, s);  // depth: anterior at the top
    for (int64_t col = 0; col < s; ++col) {
      const double x = coord(col, s);
      const double r = std::hypot(x, y - apex_y), angle = std::atan2(x, y - apex_y);
      double out = 0;
      if (std::abs(angle) < half_angle && r > 0.2 && r < 2.1) {
        const size_t i = static_cast<size_t>(row * s + col);
        const double sp = col > 0 ? 0.5 * (speckle[i] + speckle[i - 1]) : speckle[i];
        out = gain * echogenicity(a.at(x, y, z), a) * std::exp(-0.35 * (y + 1)) * sp;
        out = std::pow(std::clamp(out, 0.0, 1.0), 0.7);
      }
      *p++ = static_cast<uint8_t>(std::lround(255.0 * out));
    }
  }
  write_itk<Image>(img, path);
}

void write_endoscopy(const Anatomy& a, const SynthConfig& cfg, Rng& rng, const stdfs::path& path) {
  const int64_t F = cfg.video_frames, H = cfg.video_height, W = cfg.video_width;
  const double aspect = static_cast<double>(W) / H;
  const double base[3] = {0.82 + rng.normal(0, 0.03), 0.42 + rng.normal(0, 0.03),
                          0.40 + rng.normal(0, 0.03)};
  const double f1 = rng.uniform(2, 5), f2 = rng.uniform(2, 5), p1 = rng.uniform(0, 6.3),
               p2 = rng.uniform(0, 6.3), vessel_k = rng.uniform(4, 8),
               vessel_p = rng.uniform(0, 6.3);
  double cu0 = std::clamp(a.lx * 1.3, -0.6 * aspect, 0.6 * aspect);
  double cv0 = std::clamp(-a.lz * 1.1, -0.6, 0.6);
  const double mu = rng.uniform(-0.25, 0.25), mv = rng.uniform(-0.25, 0.25);
  if (a.finding == Finding::pattern) {  // anywhere in the central field of view
    cu0 = rng.uniform(-0.45, 0.45) * aspect;
    cv0 = rng.uniform(-0.45, 0.45);
  }
  const bool structural = a.finding == Finding::pattern;
  // A structural finding keeps the radius its 50 % threshold was set for.
  const double radius = a.lr * (structural ? 1.0 : rng.uniform(2.2, 2.8));
  if (structural) rng.uniform();  // the same number of draws either way
  std::vector<uint8_t> rgb(static_cast<size_t>(F * H * W * 3));
  size_t o = 0;
  for (int64_t t = 0; t < F; ++t) {
    const double ft = F > 1 ? static_cast<double>(t) / (F - 1) - 0.5 : 0.0;
    const double cu = cu0 + mu * ft, cv = cv0 + mv * ft;
    const double light = 1.0 + rng.normal(0, 0.03);
    for (int64_t row = 0; row < H; ++row) {
      const double v = coord(row, H);
      for (int64_t col = 0; col < W; ++col) {
        const double u = coord(col, W) * aspect;
        // Tissue: colour texture, vessels, vignetting; drifts with the camera.
        const double uu = u - mu * ft, vv = v - mv * ft;
        double tex = 1.0 + 0.08 * std::sin(f1 * uu + p1) * std::cos(f2 * vv + p2) +
                     0.05 * std::sin(f2 * uu - f1 * vv + p2);
        double c[3] = {base[0] * tex, base[1] * tex, base[2] * tex};
        if (std::abs(std::sin(vessel_k * uu + 2.5 * std::sin(1.7 * vv) + vessel_p)) < 0.06) {
          c[0] *= 0.8, c[1] *= 0.55, c[2] *= 0.6;
        }
        const double du = u - cu, dv = v - cv, dist = std::hypot(du, dv);
        double r = radius;
        if (a.finding == Finding::mass) {
          r *= 1.0 + a.lobe_amp * std::sin(5 * std::atan2(dv, du) + a.lobe_phase1);
        }
        const double dn = dist / r;
        if (structural && dn < 1.0) {
          // The tissue colour itself, brighter or darker by the pattern:
          // the same colour and mean brightness for every class.
          const double sign = pattern_hi(a.pattern, r, du, dv) ? 1.0 : -1.0;
          for (double& ck : c) ck *= 1.0 + sign * 0.12 * a.contrast;
        } else if (a.finding != Finding::none && dn < 1.0) {
          const double h = std::sqrt(1.0 - dn * dn);
          if (a.finding == Finding::nodule) {  // pale polyp with a specular highlight
            const double col_n[3] = {0.95, 0.8, 0.6};
            for (int k = 0; k < 3; ++k) c[k] = col_n[k] * (0.55 + 0.45 * h);
            if (std::hypot(du + 0.35 * r, dv + 0.35 * r) < 0.15 * r) {
              for (double& ck : c) ck += 0.35;
            }
          } else if (a.finding == Finding::cyst) {  // bluish translucent dome, red rim
            const double col_c[3] = {0.55, 0.62, 0.88};
            for (int k = 0; k < 3; ++k) c[k] = (0.3 * c[k] + 0.7 * col_c[k]) * (0.75 + 0.25 * h);
            if (dn > 0.82) c[0] = 0.6, c[1] = 0.2, c[2] = 0.25;
          } else {  // dark red irregular mass with a rough surface
            const double rough = 1.0 + 0.2 * std::sin(17 * u) * std::sin(13 * v);
            const double col_m[3] = {0.55, 0.12, 0.14};
            for (int k = 0; k < 3; ++k) c[k] = col_m[k] * rough * (0.7 + 0.3 * h);
          }
        }
        const double vignette = 1.0 - 0.45 * (u * u / (aspect * aspect) + v * v);
        for (double ck : c) {
          const double val = ck * vignette * light + rng.normal(0, 0.015);
          rgb[o++] = static_cast<uint8_t>(std::lround(255.0 * std::clamp(val, 0.0, 1.0)));
        }
      }
    }
  }
  video::write(path, rgb, F, H, W);
}

}  // namespace m3ret::data::synth
