// The synthetic body shared by every modality of the synthetic dataset
// (internal to data/). A chest-like body in a normalised box [-1, 1]^3
// (x: patient left-right, y: anterior(-)-posterior(+), z: inferior(-)-superior(+)):
// an ellipsoidal trunk of soft tissue, two lungs, a spine, and at most one
// finding inside a lung. Each modality maps the tissue classes to its own
// contrast (CT: HU, MRI: T2-like signal, ultrasound: echogenicity).
//
// Two families of findings:
//  - clinical-looking findings (normal, nodule, cyst, mass) that differ in
//    size, contrast and colour as well as shape;
//  - structural findings (stripes-h, stripes-v, checker, rings, spokes, dots):
//    one patterned sphere (or cylinder) of the same size and contrast
//    distributions for every class, filled with a binary pattern of 50 % duty
//    cycle on its central disc; only the pattern tells the classes apart.
//    The pattern lies in the plane a modality images face-on (u = image
//    right, v = image down) and is extruded along its viewing direction
//    (CT/MRI/ultrasound: the axial plane (x, y), extruded along z; X-ray: the
//    frontal plane (x, -z), extruded along y).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace m3ret::data::synth {

enum class Finding { none, nodule, cyst, mass, pattern };
Finding finding_of(const std::string& class_name);  // throws m3ret::Error for an unknown name

// Structural classes (Finding::pattern).
// stripes: stripes_h's field, named for data whose pattern_tilt spans all
// orientations; blobs: an isotropic random texture of period P (six plane
// waves of random direction and phase, thresholded).
enum class Pattern { stripes_h, stripes_v, checker, rings, spokes, dots, stripes, blobs };
// Throws m3ret::Error for a name that is not a structural class.
Pattern pattern_of(const std::string& class_name);
bool is_structural_class(const std::string& class_name);
const std::vector<std::string>& clinical_class_names();    // normal, nodule, cyst, mass
const std::vector<std::string>& structural_class_names();  // stripes-h ... blobs

// lesion_hi / lesion_lo: the two phases of a structural pattern.
enum class Tissue { air, soft, lung, bone, core, wall, lesion_hi, lesion_lo };

// The pattern of a structural finding in lesion-centred face-on coordinates
// (u, v) in normalised units, period `period`, for a lesion of radius `radius`.
struct PatternParams {
  Pattern kind = Pattern::stripes_h;
  double period = 0.3;                // spatial period (edge density 2/period; blobs ~11 % more)
  double phase_u = 0, phase_v = 0;    // pattern offsets (radians)
  double angle = 0;                   // spokes rotation (radians)
  double tilt = 0;                    // rotation of the whole pattern (radians)
  double origin_u = 0, origin_v = 0;  // the pattern's origin relative to the lesion centre
  // A smooth random displacement of (u, v) before the pattern is evaluated:
  // each component is warp_amp / 3 times a sum of three cosine plane waves of
  // wavelength warp_wavelength (directions and phases in warp_angle/warp_phase),
  // at most warp_amp, so that no two patients' patterns line up while the
  // local structure (orientation, spacing, kind) stays. 0: no displacement.
  double warp_amp = 0, warp_wavelength = 1;
  double warp_angle[6] = {}, warp_phase[6] = {};  // u: waves 0-2, v: waves 3-5
  double threshold = 0;  // level splitting the lesion disc 50/50 (set_threshold)
};
// The continuous pattern field; the lesion is "hi" where it exceeds p.threshold.
double pattern_field(const PatternParams& p, double radius, double u, double v);
// Sets p.threshold to the median of pattern_field over the disc of `radius`.
void set_threshold(PatternParams& p, double radius);
inline bool pattern_hi(const PatternParams& p, double radius, double u, double v) {
  return pattern_field(p, radius, u, v) > p.threshold;
}

// Which plane of the body the pattern lies in (set by the renderer).
enum class PatternPlane { axial, frontal };

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

// A cylindrical lesion's half height in radii: the sphere's volume (pi r^2 * 2h = 4/3 pi r^3).
inline constexpr double kCylinderHalfHeight = 2.0 / 3.0;

struct Anatomy {
  double ax = 0.8, ay = 0.6, az = 0.9;  // trunk semi-axes
  double lung_dx = 0.38, lung_ax = 0.28, lung_ay = 0.4, lung_az = 0.75;
  double spine_y = 0.42, spine_r = 0.1;
  double shift_x = 0, shift_y = 0, shift_z = 0;  // rigid position of the whole body
  Finding finding = Finding::none;
  double lx = 0, ly = 0, lz = 0, lr = 0.1;                // finding centre and radius
  double lobe_phase1 = 0, lobe_phase2 = 0, lobe_amp = 0;  // mass lobulation
  double contrast = 1.0;                                  // finding contrast factor (0.7 .. 1.3)
  PatternParams pattern;                                  // Finding::pattern only
  PatternPlane plane = PatternPlane::axial;               // Finding::pattern only
  // Finding::pattern only: the lesion is the disc of radius lr in the pattern's
  // plane extruded over +-kCylinderHalfHeight * lr along the plane's normal
  // instead of the sphere of radius lr.
  bool cylinder = false;

  // Tissue at a point of the normalised box.
  Tissue at(double x, double y, double z) const;
};

// A patient's anatomy for a finding (class-specific size/shape ranges,
// random position, body shape), then one sample of it: small jitter of
// position, size and shape, as between two scans of the same patient.
// For Finding::pattern the random draws are the same for every Pattern, and
// `geometry` sets the ranges of lesion diameter and pattern period (fractions
// of the field of view); a larger lesion is kept nearer the centre so that it
// stays inside the body.
// `tilt_lo`..`tilt_hi` (degrees) rotates the whole pattern; `offset` moves the
// pattern's origin (the centre of rings and spokes, the phase origin of the
// others) uniformly within that fraction of the lesion radius of its centre;
// `warp` > 0 displaces the pattern smoothly (PatternParams::warp_amp = warp
// periods, wavelength kWarpWavelength periods), drawn after every other value
// so that warp = 0 leaves a dataset unchanged; `cylinder` makes the lesion a
// cylinder along the pattern plane's normal (no draws: the same dataset
// otherwise).
struct PatternGeometry {
  double diameter_lo = 0.34, diameter_hi = 0.46;
  double period_lo = 0.13, period_hi = 0.19;
  double tilt_lo = -15, tilt_hi = 15;
  double offset = 0;
  double warp = 0;
  bool cylinder = false;  // synth.lesion_shape = "cylinder"
};
inline constexpr double kWarpWavelength = 4.0;  // in periods
Anatomy make_patient(Finding f, Rng& rng, Pattern pattern = Pattern::stripes_h,
                     const PatternGeometry& geometry = {});
Anatomy make_sample(const Anatomy& patient, Rng& rng);

}  // namespace m3ret::data::synth
