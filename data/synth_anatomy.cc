#include "data/synth_anatomy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <fmt/ranges.h>

#include <fmt/format.h>

#include "core/error.h"

namespace m3ret::data::synth {

const std::vector<std::string>& clinical_class_names() {
  static const std::vector<std::string> names = {"normal", "nodule", "cyst", "mass"};
  return names;
}

const std::vector<std::string>& structural_class_names() {
  static const std::vector<std::string> names = {"stripes-h", "stripes-v", "checker", "rings",
                                                 "spokes",    "dots",      "stripes", "blobs"};
  return names;
}

bool is_structural_class(const std::string& name) {
  const auto& s = structural_class_names();
  return std::find(s.begin(), s.end(), name) != s.end();
}

Pattern pattern_of(const std::string& name) {
  const auto& s = structural_class_names();
  const auto it = std::find(s.begin(), s.end(), name);
  if (it == s.end()) {
    throw Error(
        fmt::format("unknown structural class '{}' (expected {})", name, fmt::join(s, ", ")));
  }
  return static_cast<Pattern>(it - s.begin());
}

Finding finding_of(const std::string& name) {
  if (name == "normal") return Finding::none;
  if (name == "nodule") return Finding::nodule;
  if (name == "cyst") return Finding::cyst;
  if (name == "mass") return Finding::mass;
  if (is_structural_class(name)) return Finding::pattern;
  throw Error(
      fmt::format("unknown synthetic class '{}' (expected normal, nodule, cyst, mass or {})", name,
                  fmt::join(structural_class_names(), ", ")));
}

// Every kind but blobs has the same edge density (boundary length per area,
// 2 / period) so that blur and resampling mix the two phases equally for every
// class; blobs, a thresholded sum of six waves of one period, has about 11 %
// more (2.22 / period for such a random field, by Rice's formula).
double pattern_field(const PatternParams& p, double radius, double u0, double v0) {
  const double P = p.period;
  if (p.warp_amp > 0) {
    double du = 0, dv = 0;
    const double k = 2 * M_PI / p.warp_wavelength;
    for (int i = 0; i < 3; ++i) {
      du += std::cos(k * (u0 * std::cos(p.warp_angle[i]) + v0 * std::sin(p.warp_angle[i])) +
                     p.warp_phase[i]);
      dv += std::cos(k * (u0 * std::cos(p.warp_angle[i + 3]) + v0 * std::sin(p.warp_angle[i + 3])) +
                     p.warp_phase[i + 3]);
    }
    const double a = p.warp_amp / 3;  // |du|, |dv| <= warp_amp
    u0 += a * du, v0 += a * dv;
  }
  u0 -= p.origin_u, v0 -= p.origin_v;
  const double ct = std::cos(p.tilt), st = std::sin(p.tilt);
  const double u = ct * u0 - st * v0, v = st * u0 + ct * v0;
  switch (p.kind) {
    case Pattern::stripes_h:
    case Pattern::stripes:
      return std::sin(2 * M_PI * v / P + p.phase_v);
    case Pattern::stripes_v:
      return std::sin(2 * M_PI * u / P + p.phase_u);
    case Pattern::
        blobs: {  // isotropic: 6 plane waves of period P, directions and phases per patient
      double f = 0;
      for (int i = 0; i < 6; ++i) {
        const double t = p.angle + M_PI * (i + 0.5 * std::sin(p.phase_u * (i + 1))) / 6;
        const double phase = std::fmod(p.phase_v * (i + 1) * 1.6180339887, 2 * M_PI);
        f += std::cos(2 * M_PI * (u * std::cos(t) + v * std::sin(t)) / P + phase);
      }
      return f;
    }
    case Pattern::checker:  // squares of side P
      return std::sin(M_PI * u / P + p.phase_u) * std::sin(M_PI * v / P + p.phase_v);
    case Pattern::rings:
      return std::sin(2 * M_PI * std::hypot(u, v) / P + p.phase_u);
    case Pattern::spokes: {  // 2n radial edges of length R over pi R^2: n = pi R / P
      const double n = std::max(3.0, std::round(M_PI * radius / P));
      return std::sin(n * (std::atan2(v, u) + p.angle));
    }
    case Pattern::dots: {  // discs of area 1/2 on a square lattice of pitch Q = 1.25 P
      const double Q = 1.25 * P;
      const double fu = u / Q + p.phase_u / (2 * M_PI), fv = v / Q + p.phase_v / (2 * M_PI);
      const double du = fu - std::round(fu), dv = fv - std::round(fv);
      return -std::hypot(du, dv);
    }
  }
  return 0;
}

void set_threshold(PatternParams& p, double radius) {
  constexpr int kGrid = 121;
  std::vector<double> values;
  values.reserve(kGrid * kGrid);
  for (int i = 0; i < kGrid; ++i) {
    for (int j = 0; j < kGrid; ++j) {
      const double u = ((i + 0.5) / kGrid * 2 - 1) * radius,
                   v = ((j + 0.5) / kGrid * 2 - 1) * radius;
      if (u * u + v * v <= radius * radius) values.push_back(pattern_field(p, radius, u, v));
    }
  }
  auto mid = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), mid, values.end());
  p.threshold = *mid;
}

double Rng::uniform(double lo, double hi) {
  const double u = static_cast<double>(gen_() >> 11) * (1.0 / 9007199254740992.0);
  return lo + (hi - lo) * u;
}

double Rng::normal(double mean, double sd) {
  const double u1 = uniform(1e-12, 1.0), u2 = uniform();
  return mean + sd * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  uint64_t h = 0x9E3779B97F4A7C15ull;
  for (uint64_t v : {a, b, c, d}) {
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
    h ^= h >> 31;
  }
  return h;
}

Tissue Anatomy::at(double x, double y, double z) const {
  x -= shift_x, y -= shift_y, z -= shift_z;
  const double body = (x * x) / (ax * ax) + (y * y) / (ay * ay) + (z * z) / (az * az);
  if (body > 1.0) return Tissue::air;
  if (finding == Finding::pattern) {
    const double dx = x - lx, dy = y - ly, dz = z - lz;
    // v: the plane's second axis; n: its normal, the viewing axis.
    const double v = plane == PatternPlane::axial ? dy : -dz,
                 n = plane == PatternPlane::axial ? dz : dy;
    const bool inside = cylinder
                            ? dx * dx + v * v <= lr * lr && std::abs(n) <= kCylinderHalfHeight * lr
                            : dx * dx + dy * dy + dz * dz <= lr * lr;
    if (inside) return pattern_hi(pattern, lr, dx, v) ? Tissue::lesion_hi : Tissue::lesion_lo;
  } else if (finding != Finding::none) {
    const double dx = x - lx, dy = y - ly, dz = z - lz;
    const double d = std::sqrt(dx * dx + dy * dy + dz * dz);
    double r = lr;
    if (finding == Finding::mass && d > 1e-9) {
      const double theta = std::acos(std::clamp(dz / d, -1.0, 1.0));
      const double phi = std::atan2(dy, dx);
      r *= 1.0 + lobe_amp * std::sin(3 * theta + lobe_phase1) * std::cos(2 * phi + lobe_phase2);
    }
    if (finding == Finding::cyst) {
      if (d <= r && d >= 0.72 * r) return Tissue::wall;
      if (d < 0.72 * r) return Tissue::core;
    } else if (d <= r) {
      return Tissue::core;
    }
  }
  const double sx = std::abs(x) - lung_dx;
  const double lung = (sx * sx) / (lung_ax * lung_ax) + (y * y) / (lung_ay * lung_ay) +
                      (z * z) / (lung_az * lung_az);
  if (lung <= 1.0) return Tissue::lung;
  const double sy = y - spine_y;
  if (x * x + sy * sy <= spine_r * spine_r) return Tissue::bone;
  return Tissue::soft;
}

Anatomy make_patient(Finding f, Rng& rng, Pattern pattern, const PatternGeometry& g) {
  Anatomy a;
  a.ax = rng.uniform(0.72, 0.9);
  a.ay = rng.uniform(0.5, 0.66);
  a.az = rng.uniform(0.85, 0.97);
  a.lung_dx = a.ax * rng.uniform(0.44, 0.52);
  a.lung_ax = a.ax * rng.uniform(0.3, 0.38);
  a.lung_ay = a.ay * rng.uniform(0.6, 0.75);
  a.lung_az = a.az * rng.uniform(0.7, 0.85);
  a.spine_y = a.ay * 0.7;
  a.spine_r = rng.uniform(0.07, 0.11);
  a.shift_x = rng.uniform(-0.06, 0.06);
  a.shift_y = rng.uniform(-0.05, 0.05);
  a.shift_z = rng.uniform(-0.05, 0.05);
  a.finding = f;
  switch (f) {
    case Finding::none:
      break;
    case Finding::pattern: {
      // The same draws for every pattern: lesion diameter (default 0.34-0.46
      // of the field of view), period (default 0.26-0.38 of the half-width,
      // about 8-12 px at 64 px), tilt (default within +-15 degrees, so that
      // no two patients' patterns line up pixel for pixel while stripes-h and
      // stripes-v stay apart), then the pattern's origin when g.offset > 0.
      // Coordinates span 2 units: radius = diameter.
      a.lr = rng.uniform(g.diameter_lo, g.diameter_hi);
      a.pattern.kind = pattern;
      a.pattern.period = 2.0 * rng.uniform(g.period_lo, g.period_hi);
      a.pattern.phase_u = rng.uniform(0, 2 * M_PI);
      a.pattern.phase_v = rng.uniform(0, 2 * M_PI);
      a.pattern.angle = rng.uniform(0, 2 * M_PI);
      a.pattern.tilt = rng.uniform(g.tilt_lo, g.tilt_hi) * M_PI / 180;
      if (g.offset > 0) {  // uniform in the disc of radius offset * lr
        const double r = g.offset * a.lr * std::sqrt(rng.uniform()), t = rng.uniform(0, 2 * M_PI);
        a.pattern.origin_u = r * std::cos(t), a.pattern.origin_v = r * std::sin(t);
      }
      // Beyond the default size, the centre moves inwards by the extra size.
      const double extra = std::max(0.0, g.diameter_hi - 0.46);
      const double side = rng.uniform() < 0.5 ? -1.0 : 1.0;
      a.lx = side * rng.uniform(std::max(0.0, 0.15 - extra), std::max(0.0, 0.35 - extra));
      const double ly = std::max(0.05, 0.15 - extra / 4), lz = std::max(0.05, 0.35 - 0.75 * extra);
      a.ly = rng.uniform(-ly, ly);
      a.lz = rng.uniform(-lz, lz);
      a.contrast = rng.uniform(0.75, 1.25);
      a.cylinder = g.cylinder;
      if (g.warp > 0) {  // last, so that warp = 0 draws what it always drew
        a.pattern.warp_amp = g.warp * a.pattern.period;
        a.pattern.warp_wavelength = kWarpWavelength * a.pattern.period;
        for (int i = 0; i < 6; ++i) {
          a.pattern.warp_angle[i] = rng.uniform(0, 2 * M_PI);
          a.pattern.warp_phase[i] = rng.uniform(0, 2 * M_PI);
        }
      }
      return a;
    }
    case Finding::nodule:
      a.lr = rng.uniform(0.1, 0.14);
      break;
    case Finding::cyst:
      a.lr = rng.uniform(0.13, 0.18);
      break;
    case Finding::mass:
      a.lr = rng.uniform(0.2, 0.27);
      a.lobe_amp = rng.uniform(0.2, 0.35);
      a.lobe_phase1 = rng.uniform(0, 2 * M_PI);
      a.lobe_phase2 = rng.uniform(0, 2 * M_PI);
      break;
  }
  // Inside one lung, away from its border by about the radius.
  const double side = rng.uniform() < 0.5 ? -1.0 : 1.0;
  a.lx = side * a.lung_dx + rng.uniform(-0.3, 0.3) * a.lung_ax;
  a.ly = rng.uniform(-0.35, 0.35) * a.lung_ay;
  a.lz = rng.uniform(-0.45, 0.45) * a.lung_az;
  a.contrast = rng.uniform(0.75, 1.25);
  return a;
}

Anatomy make_sample(const Anatomy& p, Rng& rng) {
  Anatomy a = p;
  a.shift_x += rng.uniform(-0.03, 0.03);
  a.shift_y += rng.uniform(-0.03, 0.03);
  a.shift_z += rng.uniform(-0.03, 0.03);
  const double s = rng.uniform(0.96, 1.04);
  a.ax *= s, a.ay *= s, a.az *= s;
  a.lx += rng.uniform(-0.03, 0.03);
  a.ly += rng.uniform(-0.03, 0.03);
  a.lz += rng.uniform(-0.03, 0.03);
  a.lr *= rng.uniform(0.92, 1.08);
  a.lobe_phase1 += rng.uniform(-0.3, 0.3);
  a.contrast *= rng.uniform(0.9, 1.1);
  if (a.finding == Finding::pattern) set_threshold(a.pattern, a.lr);
  return a;
}

}  // namespace m3ret::data::synth
