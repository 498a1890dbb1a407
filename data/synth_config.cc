// SynthConfig's names and checks, apart from the renderers (data/synth.cc), so that a binary
// that only reads the configuration does not link the image and video writers.
#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/config.h"
#include "data/synth.h"
#include "data/synth_anatomy.h"

namespace m3ret::data {
namespace synth {
namespace {

const std::vector<std::string> kModalities = {"ct", "xray", "ultrasound", "endoscopy", "mri"};
// Index = seed component of a class: append only.
const std::vector<std::string> kClasses = {"normal",    "nodule",    "cyst",    "mass",
                                           "stripes-h", "stripes-v", "checker", "rings",
                                           "spokes",    "dots",      "stripes", "blobs"};

}  // namespace

const std::vector<std::string>& modality_names() { return kModalities; }
const std::vector<std::string>& class_names() { return kClasses; }

}  // namespace synth

void SynthConfig::validate() const {
  std::set<std::string> seen;
  for (const auto& c : classes) {
    if (std::find(synth::class_names().begin(), synth::class_names().end(), c) ==
        synth::class_names().end()) {
      throw config::Error(
          fmt::format("config key 'synth.classes': unknown class '{}' (expected {})", c,
                      fmt::join(synth::class_names(), ", ")));
    }
    if (!seen.insert(c).second) {
      throw config::Error(fmt::format("config key 'synth.classes': class '{}' given twice", c));
    }
  }
  size_t structural = 0;
  for (const auto& c : classes) structural += synth::is_structural_class(c);
  if (structural != 0 && structural != classes.size()) {
    throw config::Error(fmt::format(
        "config key 'synth.classes': cannot mix the finding classes ({}) with the structural "
        "classes ({}): their lesions differ in size and contrast, which would give away the class",
        fmt::join(synth::clinical_class_names(), ", "),
        fmt::join(synth::structural_class_names(), ", ")));
  }
  if (classes.size() < 2) {
    throw config::Error("config key 'synth.classes' needs at least 2 classes for retrieval");
  }
  seen.clear();
  for (const auto& m : modalities) {
    if (std::find(synth::modality_names().begin(), synth::modality_names().end(), m) ==
        synth::modality_names().end()) {
      throw config::Error(
          fmt::format("config key 'synth.modalities': unknown modality '{}' (expected {})", m,
                      fmt::join(synth::modality_names(), ", ")));
    }
    if (!seen.insert(m).second) {
      throw config::Error(
          fmt::format("config key 'synth.modalities': modality '{}' given twice", m));
    }
  }
  if (modalities.empty()) throw config::Error("config key 'synth.modalities' is empty");
  for (const auto& [key, range] : {std::pair<const char*, const std::vector<double>*>{
                                       "synth.lesion_diameter", &lesion_diameter},
                                   {"synth.pattern_period", &pattern_period},
                                   {"synth.pattern_tilt", &pattern_tilt}})
    if (range->size() != 2 || (*range)[0] > (*range)[1])
      throw config::Error(fmt::format("config key '{}' must be [lo, hi] with lo <= hi, got [{}]",
                                      key, fmt::join(*range, ", ")));
  const bool both_stripes = std::count(classes.begin(), classes.end(), "stripes-h") &&
                            std::count(classes.begin(), classes.end(), "stripes-v");
  if (both_stripes && pattern_tilt[1] - pattern_tilt[0] >= 90)
    throw config::Error(fmt::format(
        "config key 'synth.pattern_tilt': [{}] spans 90 degrees or more, which turns stripes-h "
        "into stripes-v; use the class 'stripes' instead of both",
        fmt::join(pattern_tilt, ", ")));
  if (video_width % 2 || video_height % 2) {
    throw config::Error(
        fmt::format("config keys 'synth.video_width/video_height' must be even, got {}x{}",
                    video_width, video_height));
  }
}

}  // namespace m3ret::data
