// The synthetic body shared by every modality of the synthetic dataset
// (internal to data/). A chest-like body in a normalised box [-1, 1]^3
// (x: patient left-right, y: anterior(-)-posterior(+), z: inferior(-)-superior(+)):
// an ellipsoidal trunk of soft tissue, two lungs, a spine, and at most one
// finding inside a lung. Each modality maps the tissue classes to its own
// contrast (CT: HU, MRI: T2-like signal, ultrasound: echogenicity).
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace m3ret::data::synth {

enum class Finding { none, nodule, cyst, mass };
Finding finding_of(const std::string& class_name);  // throws m3ret::Error for an unknown name

enum class Tissue { air, soft, lung, bone, core, wall };

// Deterministic random numbers (mt19937_64 is specified bit-exactly; the
// distributions are computed here so that results do not depend on the
// standard library).
class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  double uniform(double lo = 0.0, double hi = 1.0);
  double normal(double mean = 0.0, double sd = 1.0);
  uint64_t bits() { return gen_(); }

 private:
  std::mt19937_64 gen_;
};

// splitmix64 mix of several values into one seed.
uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c = 0, uint64_t d = 0);

struct Anatomy {
  double ax = 0.8, ay = 0.6, az = 0.9;           // trunk semi-axes
  double lung_dx = 0.38, lung_ax = 0.28, lung_ay = 0.4, lung_az = 0.75;
  double spine_y = 0.42, spine_r = 0.1;
  double shift_x = 0, shift_y = 0, shift_z = 0;  // rigid position of the whole body
  Finding finding = Finding::none;
  double lx = 0, ly = 0, lz = 0, lr = 0.1;       // finding centre and radius
  double lobe_phase1 = 0, lobe_phase2 = 0, lobe_amp = 0;  // mass lobulation
  double contrast = 1.0;                         // finding contrast factor (0.7 .. 1.3)

  // Tissue at a point of the normalised box.
  Tissue at(double x, double y, double z) const;
};

// A patient's anatomy for a finding (class-specific size/shape ranges,
// random position, body shape), then one sample of it: small jitter of
// position, size and shape, as between two scans of the same patient.
Anatomy make_patient(Finding f, Rng& rng);
Anatomy make_sample(const Anatomy& patient, Rng& rng);

}  // namespace m3ret::data::synth
