#include "data/synth_anatomy.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"

namespace m3ret::data::synth {

Finding finding_of(const std::string& name) {
  if (name == "normal") return Finding::none;
  if (name == "nodule") return Finding::nodule;
  if (name == "cyst") return Finding::cyst;
  if (name == "mass") return Finding::mass;
  throw Error(fmt::format("unknown synthetic class '{}' (expected normal, nodule, cyst or mass)", name));
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
  if (finding != Finding::none) {
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

Anatomy make_patient(Finding f, Rng& rng) {
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
    case Finding::none: break;
    case Finding::nodule: a.lr = rng.uniform(0.1, 0.14); break;
    case Finding::cyst: a.lr = rng.uniform(0.13, 0.18); break;
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
  return a;
}

}  // namespace m3ret::data::synth
