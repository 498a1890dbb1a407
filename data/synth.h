// The synthetic hybrid dataset, written in real file formats.
//
// Classes are shared across modalities: each class is a kind of finding
// (default: normal = none, nodule = a bright round blob, cyst = a dark
// ring-walled sphere, mass = a large irregular lobulated lesion) that is drawn
// into a synthetic body and then rendered per modality. A second family, the
// structural classes (stripes-h, stripes-v, checker, rings, spokes, dots,
// stripes, blobs),
// differs only in the binary pattern filling one lesion whose size, contrast,
// colour and mean intensity follow the same distributions for every class (a
// benchmark that shortcut features cannot solve; see docs/data.md). The two
// families cannot be mixed in one dataset.
//   ct         NIfTI .nii.gz, int16 HU, with voxel spacing        (3D)
//   xray       DICOM .dcm (uint16, Modality DX), a projection of such a body (2D)
//   ultrasound PNG (grey), a slice with multiplicative speckle    (2D)
//   endoscopy  MP4 (libx264 or mpeg4), RGB tissue scene, lesion as a coloured
//              bump moving slightly over the frames               (video)
//   mri        NIfTI .nii.gz, float32, other contrast than CT; split "test"
//              only (unseen modality, evaluation only)            (3D)
// Patients are groups (one modality each, several samples per patient); the
// split is by patient ("train"/"test", test_fraction of the patients of each
// class and modality go to "test"). Deterministic for a seed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/config.h"

namespace m3ret::data {

struct SynthConfig {
  int64_t seed = 1;
  std::vector<std::string> classes = {"normal", "nodule", "cyst", "mass"};
  std::vector<std::string> modalities = {"ct", "xray", "ultrasound", "endoscopy", "mri"};
  int64_t patients_per_class = 4;  // per modality
  int64_t samples_per_patient = 2;
  double test_fraction = 0.25;  // of the patients (per class and modality)
  int64_t image_size = 96;      // xray / ultrasound side (pixels)
  int64_t volume_size = 48;     // CT/MRI in-plane side (voxels)
  int64_t volume_slices = 32;   // CT/MRI slices
  int64_t video_frames = 16;
  int64_t video_width = 96;   // even (yuv420p)
  int64_t video_height = 80;  // even (yuv420p)
  // Structural classes only: the lesion's diameter and the pattern's period,
  // each drawn uniformly in [lo, hi], as fractions of the field of view.
  std::vector<double> lesion_diameter = {0.34, 0.46};
  std::vector<double> pattern_period = {0.13, 0.19};
  // Rotation of the whole pattern, drawn in [lo, hi] degrees, and how far the
  // pattern's origin (centre of rings and spokes) may lie from the lesion's
  // centre, as a fraction of its radius.
  std::vector<double> pattern_tilt = {-15, 15};
  double pattern_offset = 0;
  // A smooth random displacement of the pattern, drawn per patient: at most
  // this many periods along each axis, wavelength 4 periods; 0 = none.
  double pattern_warp = 0;
  // The structural lesion's solid: "sphere", or "cylinder" (the lesion disc
  // extruded along the viewing axis, the sphere's volume), in which every slice
  // and every projected ray meets the whole disc, so that a volume keeps the
  // disc's 50 % share of each phase for every class and patient.
  std::string lesion_shape = "sphere";

  template <class V>
  void visit(V& v) {
    v("seed", seed, "random seed (the dataset is a function of the config)",
      config::Range{0, 9.2e18});
    v("classes", classes,
      "findings, shared across modalities: normal, nodule, cyst, mass, or the structural classes "
      "stripes-h, stripes-v, checker, rings, spokes, dots, stripes, blobs (>= 2, one family only)");
    v("modalities", modalities, "modalities to write: ct, xray, ultrasound, endoscopy, mri");
    v("patients_per_class", patients_per_class, "patients per class and modality",
      config::Range{1, 100000});
    v("samples_per_patient", samples_per_patient, "samples per patient", config::Range{1, 1000});
    v("test_fraction", test_fraction, "fraction of patients in the test split",
      config::Range{0, 1});
    v("image_size", image_size, "X-ray/ultrasound side (pixels)", config::Range{16, 4096});
    v("volume_size", volume_size, "CT/MRI in-plane side (voxels)", config::Range{16, 1024});
    v("volume_slices", volume_slices, "CT/MRI slices", config::Range{4, 1024});
    v("video_frames", video_frames, "endoscopy frames per video", config::Range{2, 1000});
    v("video_width", video_width, "endoscopy width (even)", config::Range{16, 4096});
    v("video_height", video_height, "endoscopy height (even)", config::Range{16, 4096});
    v("lesion_diameter", lesion_diameter,
      "structural classes: [lo, hi] lesion diameter as a fraction of the field of view",
      config::Range{0.1, 0.7});
    v("pattern_period", pattern_period,
      "structural classes: [lo, hi] pattern period as a fraction of the field of view",
      config::Range{0.02, 0.5});
    v("pattern_tilt", pattern_tilt,
      "structural classes: [lo, hi] rotation of the whole pattern (degrees)",
      config::Range{-360, 360});
    v("pattern_offset", pattern_offset,
      "structural classes: the pattern's origin lies within this fraction of the lesion radius "
      "of the lesion centre",
      config::Range{0, 0.9});
    v("pattern_warp", pattern_warp,
      "structural classes: largest displacement of the pattern along each axis by a smooth "
      "random warp drawn per patient, in periods (wavelength 4 periods; 0 = none)",
      config::Range{0, 2});
    v("lesion_shape", lesion_shape,
      "structural classes: the lesion's solid, a sphere or a cylinder along the viewing axis "
      "(the disc extruded; every slice then holds the whole disc)",
      config::OneOf{{"sphere", "cylinder"}});
  }
  // Throws config::Error naming the key for an unknown class or modality, fewer
  // than 2 classes, classes of both families, an odd video size, or a
  // lesion_diameter / pattern_period / pattern_tilt that is not [lo, hi] with
  // lo <= hi, or a pattern_tilt of 90 degrees or more with stripes-h and stripes-v.
  void validate() const;
};

// Writes the dataset into out_dir (created if needed): the files under
// out_dir/<modality>/ and out_dir/manifest.csv, the manifest last and
// atomically (its presence means the dataset is complete).
// Throws m3ret::Error naming the file on any failure.
void synthesize(const SynthConfig& cfg, const std::filesystem::path& out_dir);

namespace synth {
// What `synth.modalities` and `synth.classes` may name. A class's index in class_names() is
// part of its samples' seeds: the list is only appended to.
const std::vector<std::string>& modality_names();
const std::vector<std::string>& class_names();
}  // namespace synth

}  // namespace m3ret::data
