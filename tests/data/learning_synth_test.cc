// The structural classes of the synthetic dataset (a learning benchmark):
// shortcut probes (downsampled raw pixels, intensity/colour histograms) must
// retrieve them at chance, class means of intensity and colour must not
// separate them, and yet the classes must differ in structure (a
// translation-invariant spectral feature separates them, and the generator's
// own patterns differ between classes).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <complex>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/config.h"
#include "core/parallel.h"
#include "data/manifest.h"
#include "data/reader.h"
#include "data/synth.h"
#include "data/synth_anatomy.h"
#include "data/synth_render.h"
#include "eval/embed.h"
#include "test_util.h"

namespace m3ret::data {
namespace {

namespace stdfs = std::filesystem;

const std::vector<std::string> kStructural = {"stripes-h", "stripes-v", "checker",
                                              "rings",     "spokes",    "dots"};
const std::vector<std::string> kModalities = {"ct", "xray", "ultrasound", "endoscopy", "mri"};

// A shipped benchmark's generator (configs/<config>'s [synth]: classes, sizes,
// lesion and pattern geometry, warp) at a smaller patient count and seed 5.
SynthConfig bench_config(int64_t patients_per_class, const std::string& config = "learning.toml") {
  config::Document doc;
  doc.add_file(testing::source_dir() / "configs" / config);
  SynthConfig c;
  doc.bind("synth", c);
  c.seed = 5;
  c.patients_per_class = patients_per_class;
  return c;
}

PreprocessConfig bench_preprocess() {
  PreprocessConfig p;
  p.image_size = 64;
  p.video_frames = 8;
  p.volume_size = 64;
  p.volume_slices = 16;
  return p;
}

// Every row of a manifest read through the real readers and preprocessing.
std::vector<Sample> read_all(const stdfs::path& manifest, const PreprocessConfig& pre) {
  const auto rows = read_manifest(manifest, /*check_paths=*/true);
  std::vector<Sample> out(rows.size());
  parallel_for(rows.size(), 4,
               [&](size_t i) { out[i] = read_sample(rows[i], manifest.parent_path(), pre); });
  return out;
}

std::vector<const Sample*> of_modality(const std::vector<Sample>& all, const std::string& m) {
  std::vector<const Sample*> out;
  for (const auto& s : all) {
    if (s.modality == m) out.push_back(&s);
  }
  return out;
}

using Featuriser = std::vector<float> (*)(const uint8_t*, int64_t, int64_t, int64_t, int64_t,
                                          int64_t);

// Features of each sample, one row of `dim` floats per sample.
std::vector<std::vector<float>> featurise(const std::vector<const Sample*>& samples, Featuriser f) {
  std::vector<std::vector<float>> out;
  for (const Sample* s : samples) out.push_back(f(s->pixels.data(), 1, s->C, s->T, s->H, s->W));
  return out;
}

// A structural (not a shortcut) feature: the 2-D power spectrum of each
// frame/slice (translation-invariant), averaged, in the band of the pattern
// periods (4-16 px at 64 px), log-compressed, centred and L2-normalised.
std::vector<float> spectral_features(const uint8_t* pixels, int64_t, int64_t C, int64_t T,
                                     int64_t H, int64_t W) {
  const int K = 16;  // frequencies -K..K per axis
  std::vector<double> power((2 * K + 1) * (2 * K + 1), 0.0);
  std::vector<double> img(static_cast<size_t>(H * W));
  for (int64_t t = 0; t < T; ++t) {
    double mean = 0;
    for (int64_t i = 0; i < H * W; ++i) {
      double v = 0;
      for (int64_t c = 0; c < C; ++c) v += pixels[(c * T + t) * H * W + i];
      img[i] = v / C;
      mean += img[i];
    }
    mean /= static_cast<double>(H * W);
    // Separable DFT at the wanted frequencies only.
    std::vector<std::complex<double>> rows(static_cast<size_t>(H * (2 * K + 1)));
    for (int64_t y = 0; y < H; ++y) {
      for (int fx = -K; fx <= K; ++fx) {
        std::complex<double> acc = 0;
        for (int64_t x = 0; x < W; ++x) {
          acc += (img[y * W + x] - mean) *
                 std::polar(1.0, -2 * M_PI * fx * x / static_cast<double>(W));
        }
        rows[y * (2 * K + 1) + fx + K] = acc;
      }
    }
    for (int fy = -K; fy <= K; ++fy) {
      for (int fx = -K; fx <= K; ++fx) {
        std::complex<double> acc = 0;
        for (int64_t y = 0; y < H; ++y) {
          acc += rows[y * (2 * K + 1) + fx + K] *
                 std::polar(1.0, -2 * M_PI * fy * y / static_cast<double>(H));
        }
        power[(fy + K) * (2 * K + 1) + fx + K] += std::norm(acc);
      }
    }
  }
  std::vector<float> f;
  for (int fy = -K; fy <= K; ++fy) {
    for (int fx = -K; fx <= K; ++fx) {
      const double r = std::hypot(fx * 64.0 / W, fy * 64.0 / H);
      if (r >= 4 && r <= 16)
        f.push_back(static_cast<float>(std::log1p(power[(fy + K) * (2 * K + 1) + fx + K])));
    }
  }
  double m = 0, n2 = 0;
  for (float v : f) m += v;
  m /= static_cast<double>(f.size());
  for (float& v : f) v = static_cast<float>(v - m), n2 += double(v) * v;
  for (float& v : f) v = static_cast<float>(v / std::sqrt(std::max(n2, 1e-24)));
  return f;
}

struct Recall {
  double recall = 0;  // recall@1, same-patient candidates excluded
  double chance = 0;  // expected recall@1 of a random candidate
  double sd = 0;      // binomial SD of `recall` at chance, over query patients
  size_t queries = 0;
  std::map<std::string, double> per_class;  // recall@1 of each class's queries
};

// Leave-one-patient-out nearest neighbour by cosine (features are compared by
// dot product after L2 normalisation).
Recall recall_at_1(const std::vector<const Sample*>& s, const std::vector<std::vector<float>>& f) {
  Recall r;
  std::set<std::string> patients;
  double hits = 0, chance = 0;
  std::map<std::string, int> queries_of;
  for (size_t q = 0; q < s.size(); ++q) {
    double qn = 0;
    for (float v : f[q]) qn += double(v) * v;
    double best = -1e300;
    size_t best_i = q;
    size_t same = 0, total = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i]->group == s[q]->group) continue;
      ++total;
      same += s[i]->labels == s[q]->labels;
      double dot = 0, n = 0;
      for (size_t k = 0; k < f[q].size(); ++k)
        dot += double(f[q][k]) * f[i][k], n += double(f[i][k]) * f[i][k];
      const double cos = dot / std::sqrt(std::max(qn * n, 1e-24));
      if (cos > best) best = cos, best_i = i;
    }
    hits += s[best_i]->labels == s[q]->labels;
    r.per_class[s[q]->labels.at(0)] += s[best_i]->labels == s[q]->labels;
    ++queries_of[s[q]->labels.at(0)];
    chance += static_cast<double>(same) / static_cast<double>(total);
    patients.insert(s[q]->group);
  }
  for (auto& [label, h] : r.per_class) h /= queries_of[label];
  r.queries = s.size();
  r.recall = hits / static_cast<double>(s.size());
  r.chance = chance / static_cast<double>(s.size());
  // Samples of one patient are near-duplicates: count patients, not samples.
  r.sd = std::sqrt(r.chance * (1 - r.chance) / static_cast<double>(patients.size()));
  return r;
}

// The generated benchmark of each shipped learning config, once per test binary
// (8 patients x 2 samples per class and modality: 96 samples per modality, 96 MRI):
// configs/learning.toml and the texture benchmark, configs/learning-texture.toml.
class LearningSynth : public ::testing::TestWithParam<std::string> {
 protected:
  static const std::vector<Sample>& samples() {
    static std::map<std::string, std::pair<std::unique_ptr<testing::TempDir>, std::vector<Sample>>>
        cache;
    auto& [dir, samples] = cache[GetParam()];
    if (!dir) {
      dir = std::make_unique<testing::TempDir>("learning-synth");
      synthesize(bench_config(8, GetParam()), dir->path() / "ds");
      samples = read_all(dir->path() / "ds" / "manifest.csv", bench_preprocess());
    }
    return samples;
  }
};

// Binding [synth] with the override KEY=VALUE throws a config::Error naming `key`.
void expect_synth_override_refused(const std::string& override, const std::string& key) {
  config::Document doc;
  doc.add_override(override);
  SynthConfig cfg;
  try {
    doc.bind("synth", cfg);
    FAIL() << override << " accepted";
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
  }
}

TEST(LearningSynthConfig, StructuralClassesValidateAndDoNotMixWithFindings) {
  SynthConfig c;
  c.classes = kStructural;
  EXPECT_NO_THROW(c.validate());
  c.classes = {"rings", "spokes"};
  EXPECT_NO_THROW(c.validate());
  c.classes = {"normal", "rings"};
  try {
    c.validate();
    FAIL() << "mixed families accepted";
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("synth.classes"), std::string::npos) << e.what();
  }
  c.classes = {"rings", "zigzag"};
  EXPECT_THROW(c.validate(), config::Error);
}

// synth.pattern_tilt turns the whole pattern by an angle drawn in its range,
// synth.pattern_offset moves the pattern's origin off the lesion centre within
// that fraction of the radius; a tilt range of 90 degrees or more is refused
// while stripes-h and stripes-v are both classes (it would make them one).
TEST(LearningSynthConfig, PatternTiltAndOffsetSetTheDraws) {
  synth::PatternGeometry g;
  g.tilt_lo = 0, g.tilt_hi = 360, g.offset = 0.5;
  double max_tilt = 0, max_off = 0;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    synth::Rng rng(seed);
    const auto a = synth::make_patient(synth::Finding::pattern, rng, synth::Pattern::stripes, g);
    EXPECT_GE(a.pattern.tilt, 0);
    EXPECT_LE(a.pattern.tilt, 2 * M_PI);
    const double off = std::hypot(a.pattern.origin_u, a.pattern.origin_v);
    EXPECT_LE(off, 0.5 * a.lr + 1e-12);
    max_tilt = std::max(max_tilt, a.pattern.tilt), max_off = std::max(max_off, off / a.lr);
  }
  EXPECT_GT(max_tilt, 1.8 * M_PI);
  EXPECT_GT(max_off, 0.45);
  synth::Rng r1(4);  // the default geometry: +-15 degrees, the origin at the centre
  const auto d = synth::make_patient(synth::Finding::pattern, r1, synth::Pattern::rings);
  EXPECT_LE(std::abs(d.pattern.tilt), 15 * M_PI / 180 + 1e-12);
  EXPECT_EQ(d.pattern.origin_u, 0);
  EXPECT_EQ(d.pattern.origin_v, 0);
  // Rings about the moved origin: the field is a function of the distance to it.
  synth::PatternParams p;
  p.kind = synth::Pattern::rings, p.origin_u = 0.2, p.origin_v = -0.1, p.tilt = 1.0;
  EXPECT_NEAR(synth::pattern_field(p, 0.6, 0.2 + 0.3, -0.1),
              synth::pattern_field(p, 0.6, 0.2, -0.1 - 0.3), 1e-12);

  SynthConfig c;
  c.classes = kStructural;
  c.pattern_tilt = {0, 90};
  try {
    c.validate();
    FAIL() << "a 90-degree tilt range with stripes-h and stripes-v accepted";
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("synth.pattern_tilt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'stripes'"), std::string::npos) << e.what();
  }
  c.classes = {"stripes", "blobs", "checker", "rings", "spokes", "dots"};
  EXPECT_NO_THROW(c.validate());
  c.pattern_tilt = {10, -10};
  EXPECT_THROW(c.validate(), config::Error);
}

// synth.lesion_diameter / synth.pattern_period: the ranges the lesions are
// drawn from (fractions of the field of view, which spans 2 units), validated.
TEST(LearningSynthConfig, LesionDiameterAndPatternPeriodSetTheDraws) {
  synth::PatternGeometry g{0.54, 0.66, 0.17, 0.23};
  for (uint64_t seed = 0; seed < 200; ++seed) {
    synth::Rng rng(seed);
    const auto a = synth::make_patient(synth::Finding::pattern, rng, synth::Pattern::rings, g);
    EXPECT_GE(a.lr, 0.54);
    EXPECT_LE(a.lr, 0.66);
    EXPECT_GE(a.pattern.period, 2 * 0.17);
    EXPECT_LE(a.pattern.period, 2 * 0.23);
    EXPECT_LE(std::abs(a.lx) + a.lr, 0.81);  // a larger lesion sits nearer the centre
  }
  synth::Rng r1(3), r2(3);  // the defaults are the default geometry
  EXPECT_EQ(synth::make_patient(synth::Finding::pattern, r1, synth::Pattern::dots).lr,
            synth::make_patient(synth::Finding::pattern, r2, synth::Pattern::dots,
                                synth::PatternGeometry{})
                .lr);
  SynthConfig c;
  c.classes = kStructural;
  c.lesion_diameter = {0.5, 0.4};
  try {
    c.validate();
    FAIL() << "lo > hi accepted";
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("synth.lesion_diameter"), std::string::npos) << e.what();
  }
  c.lesion_diameter = {0.4};
  EXPECT_THROW(c.validate(), config::Error);
  c.lesion_diameter = {0.4, 0.5};
  c.pattern_period = {0.2, 0.1};
  EXPECT_THROW(c.validate(), config::Error);
}

// synth.pattern_warp displaces the pattern smoothly: warp 0 draws exactly
// what it always drew; a warp moves the field by at most its amplitude along
// each axis, smoothly, and is a different displacement for each patient, while
// both samples of a patient share it.
TEST(LearningSynthConfig, PatternWarpDisplacesThePatternSmoothly) {
  synth::PatternGeometry plain{0.54, 0.66, 0.17, 0.23}, warped = plain;
  warped.warp = 0.6;
  synth::Rng r1(7), r2(7);
  const auto a = synth::make_patient(synth::Finding::pattern, r1, synth::Pattern::stripes_h, plain);
  const auto b =
      synth::make_patient(synth::Finding::pattern, r2, synth::Pattern::stripes_h, warped);
  EXPECT_EQ(a.pattern.warp_amp, 0);
  EXPECT_EQ(a.lr, b.lr);  // the warp is drawn after everything else
  EXPECT_EQ(a.pattern.period, b.pattern.period);
  EXPECT_EQ(a.pattern.phase_v, b.pattern.phase_v);
  EXPECT_EQ(a.lx, b.lx);
  EXPECT_EQ(a.contrast, b.contrast);
  EXPECT_DOUBLE_EQ(b.pattern.warp_amp, 0.6 * b.pattern.period);
  EXPECT_DOUBLE_EQ(b.pattern.warp_wavelength, synth::kWarpWavelength * b.pattern.period);

  // stripes-h with no tilt: the field is sin(2 pi v' / P + phase) with v' = v + dv,
  // so the displacement along v can be read back from the field where it is monotone.
  synth::PatternParams p = b.pattern;
  p.tilt = 0, p.origin_u = 0, p.origin_v = 0, p.phase_v = 0;
  synth::PatternParams flat = p;
  flat.warp_amp = 0;
  double max_diff = 0;
  int differ = 0, n = 0;
  for (double u = -0.5; u <= 0.5; u += 0.05) {
    for (double v = -0.5; v <= 0.5; v += 0.05) {
      const double w = synth::pattern_field(p, a.lr, u, v),
                   f = synth::pattern_field(flat, a.lr, u, v);
      max_diff = std::max(max_diff, std::abs(w - f));
      differ += std::abs(w - f) > 0.05;
      ++n;
      // The warped field is the flat one at a point at most warp_amp away along v.
      bool found = false;
      for (double dv = -p.warp_amp; dv <= p.warp_amp && !found; dv += p.warp_amp / 200)
        found = std::abs(synth::pattern_field(flat, a.lr, u, v + dv) - w) < 0.03;
      EXPECT_TRUE(found) << "u " << u << " v " << v;
    }
  }
  EXPECT_GT(differ, n / 3) << "the warp barely moves the pattern (max |diff| " << max_diff << ")";
  // Smooth: a step of 1 % of the period changes the field by little.
  for (double v = -0.5; v <= 0.5; v += 0.01)
    EXPECT_LT(std::abs(synth::pattern_field(p, a.lr, 0.1, v + 0.01 * p.period) -
                       synth::pattern_field(p, a.lr, 0.1, v)),
              0.2);
  // Per patient: another patient's warp differs; a sample keeps its patient's.
  synth::Rng r3(8);
  const auto c =
      synth::make_patient(synth::Finding::pattern, r3, synth::Pattern::stripes_h, warped);
  EXPECT_NE(c.pattern.warp_phase[0], b.pattern.warp_phase[0]);
  const auto s = synth::make_sample(b, r3);
  EXPECT_EQ(s.pattern.warp_phase[5], b.pattern.warp_phase[5]);
  EXPECT_EQ(s.pattern.warp_angle[2], b.pattern.warp_angle[2]);

  expect_synth_override_refused("synth.pattern_warp=3", "synth.pattern_warp");
}

TEST(LearningSynthConfig, ConfigsLearningTomlIsAStructuralBenchmark) {
  config::Document doc;
  doc.add_file(testing::source_dir() / "configs" / "learning.toml");
  SynthConfig synth;
  PreprocessConfig pre;
  doc.bind("synth", synth);
  doc.bind("preprocess", pre);  // the other sections: Cli.EveryShippedConfigLoads
  EXPECT_NO_THROW(synth.validate());
  EXPECT_EQ(pre.image_size, 64);
  EXPECT_EQ(pre.video_frames, 4);
  EXPECT_EQ(pre.volume_size, 64);
  EXPECT_EQ(pre.volume_slices, 8);
  EXPECT_GE(synth.classes.size(), 6u);
  for (const auto& c : synth.classes) EXPECT_TRUE(synth::is_structural_class(c)) << c;
  EXPECT_EQ(std::set<std::string>(synth.modalities.begin(), synth.modalities.end()),
            std::set<std::string>(kModalities.begin(), kModalities.end()));
  // At least 16 test patients per class and modality.
  EXPECT_GE(std::lround(synth.test_fraction * synth.patients_per_class), 16);
}

// The pattern field of every class: balanced (50 % of the lesion disc) and
// distinct. Its translation-invariant signature (power spectrum of the
// binary pattern in the disc) is closer within a class than across classes.
TEST(LearningSynthPattern, EveryClassHasADistinctBalancedPattern) {
  const int N = 128;
  auto spectrum = [&](const synth::PatternParams& p, double radius) {
    std::vector<double> img(N * N);
    double hi = 0, in = 0;
    for (int y = 0; y < N; ++y) {
      for (int x = 0; x < N; ++x) {
        const double u = (x + 0.5 - N / 2.0) / (N / 2.0), v = (y + 0.5 - N / 2.0) / (N / 2.0);
        if (u * u + v * v > radius * radius) continue;
        const bool h = synth::pattern_hi(p, radius, u, v);
        img[y * N + x] = h ? 1 : -1;
        hi += h, in += 1;
      }
    }
    EXPECT_NEAR(hi / in, 0.5, 0.04) << static_cast<int>(p.kind);
    std::vector<double> s;
    for (int fy = 0; fy <= 24; ++fy) {
      for (int fx = -24; fx <= 24; ++fx) {
        std::complex<double> acc = 0;
        for (int y = 0; y < N; ++y)
          for (int x = 0; x < N; ++x)
            if (img[y * N + x] != 0)
              acc += img[y * N + x] * std::polar(1.0, -2 * M_PI * (fx * x + fy * y) / N);
        s.push_back(std::abs(acc));
      }
    }
    double n = 0;
    for (double v : s) n += v * v;
    for (double& v : s) v /= std::sqrt(n);
    return s;
  };
  synth::Rng rng(3);
  std::vector<std::vector<std::vector<double>>> spectra(kStructural.size());
  for (size_t c = 0; c < kStructural.size(); ++c) {
    for (int i = 0; i < 6; ++i) {
      synth::Anatomy a = synth::make_sample(
          synth::make_patient(synth::Finding::pattern, rng, synth::pattern_of(kStructural[c])),
          rng);
      spectra[c].push_back(spectrum(a.pattern, a.lr));
    }
  }
  auto sim = [](const std::vector<double>& a, const std::vector<double>& b) {
    double d = 0;
    for (size_t k = 0; k < a.size(); ++k) d += a[k] * b[k];
    return d;
  };
  for (size_t c = 0; c < kStructural.size(); ++c) {
    double same = 0, other = 0;
    int ns = 0, no = 0;
    for (size_t i = 0; i < spectra[c].size(); ++i) {
      for (size_t j = 0; j < spectra[c].size(); ++j)
        if (i != j) same += sim(spectra[c][i], spectra[c][j]), ++ns;
      for (size_t d = 0; d < kStructural.size(); ++d)
        if (d != c)
          for (const auto& b : spectra[d]) other += sim(spectra[c][i], b), ++no;
    }
    same /= ns, other /= no;
    EXPECT_GT(same, other + 0.1) << kStructural[c] << ": same-class " << same << ", other "
                                 << other;
  }
}

// Shortcut probes stay at chance in every modality. Margin: 3.5 binomial SDs
// over the query patients (samples of a patient are near-duplicates), about
// 0.18 here; over the five modalities pooled, 3 SDs (about 0.07).
TEST_P(LearningSynth, ShortcutProbesRetrieveAtChance) {
  for (auto [name, f] :
       {std::pair<const char*, Featuriser>{"raw-pixels", &eval::raw_pixel_features},
        std::pair<const char*, Featuriser>{"histogram", &eval::histogram_features}}) {
    double sum = 0, sum_chance = 0, var = 0;
    for (const auto& m : kModalities) {
      const auto s = of_modality(samples(), m);
      ASSERT_EQ(s.size(), 96u) << m;
      const Recall r = recall_at_1(s, featurise(s, f));
      std::printf("%-10s %-10s recall@1 %.3f  chance %.3f  (sd %.3f)\n", name, m.c_str(), r.recall,
                  r.chance, r.sd);
      EXPECT_LT(r.recall, r.chance + 3.5 * r.sd) << name << " on " << m;
      sum += r.recall, sum_chance += r.chance, var += r.sd * r.sd;
    }
    const double k = static_cast<double>(kModalities.size());
    EXPECT_LT(sum / k, sum_chance / k + 3 * std::sqrt(var) / k) << name << " pooled";
  }
}

// The classes are learnable: in the lesion region of real rendered files
// (read back through the readers), a translation-invariant structural feature
// (the power spectrum of a disc around the lesion) is more similar within a
// class than across classes, and retrieves the class well above chance, in
// every modality. Endoscopy (where the lesion position is drawn by the
// renderer) uses the whole frame, whose only strong structure is the lesion.
TEST(LearningSynthPattern, LesionRegionsAreMoreSimilarWithinAClass) {
  testing::TempDir dir("learning-lesion");
  const SynthConfig cfg = bench_config(1);
  const PreprocessConfig pre = bench_preprocess();
  const int kPatients = 6;
  const int R = 11, Nc = 2 * R + 2;  // crop of 24 px around the lesion centre, disc of 11 px
  auto crop_spectrum = [&](const Sample& s, double cx, double cy, int t0, int t1,
                           std::vector<double>& acc) {
    for (int t = std::max(t0, 0); t <= std::min<int>(t1, static_cast<int>(s.T) - 1); ++t) {
      std::vector<double> img(Nc * Nc, 0.0);
      double mean = 0, n = 0;
      for (int y = 0; y < Nc; ++y) {
        for (int x = 0; x < Nc; ++x) {
          const int px = static_cast<int>(std::lround(cx - Nc / 2.0 + x)),
                    py = static_cast<int>(std::lround(cy - Nc / 2.0 + y));
          if (std::hypot(x + 0.5 - Nc / 2.0, y + 0.5 - Nc / 2.0) > R) continue;
          if (px < 0 || py < 0 || px >= s.W || py >= s.H) continue;
          double v = 0;
          for (int64_t c = 0; c < s.C; ++c) v += s.pixels[((c * s.T + t) * s.H + py) * s.W + px];
          img[y * Nc + x] = v / static_cast<double>(s.C);
          mean += img[y * Nc + x], n += 1;
        }
      }
      mean /= std::max(n, 1.0);
      size_t k = 0;
      for (int fy = 0; fy <= 8; ++fy) {
        for (int fx = -8; fx <= 8; ++fx, ++k) {
          std::complex<double> a = 0;
          for (int y = 0; y < Nc; ++y)
            for (int x = 0; x < Nc; ++x)
              if (img[y * Nc + x] != 0)
                a += (img[y * Nc + x] - mean) * std::polar(1.0, -2 * M_PI * (fx * x + fy * y) / Nc);
          if (acc.size() <= k) acc.resize(k + 1, 0.0);
          acc[k] += std::norm(a);
        }
      }
    }
  };
  auto normalise = [](std::vector<double> v) {
    std::vector<float> f;
    for (double x : v) f.push_back(static_cast<float>(std::log1p(x)));
    double m = 0, n2 = 0;
    for (float x : f) m += x;
    m /= static_cast<double>(f.size());
    for (float& x : f) x = static_cast<float>(x - m), n2 += double(x) * x;
    for (float& x : f) x = static_cast<float>(x / std::sqrt(std::max(n2, 1e-24)));
    return f;
  };
  for (const auto& m : kModalities) {
    std::vector<Sample> samples;
    std::vector<std::vector<float>> feats;
    for (size_t c = 0; c < kStructural.size(); ++c) {
      for (int i = 0; i < kPatients; ++i) {
        synth::Rng rng(synth::mix_seed(17, c, static_cast<uint64_t>(i)));
        const synth::Anatomy a = synth::make_sample(
            synth::make_patient(synth::Finding::pattern, rng, synth::pattern_of(kStructural[c])),
            rng);
        ManifestRow row;
        row.modality = m;
        row.labels = {kStructural[c]};
        row.group = fmt::format("{}-{}", kStructural[c], i);
        const char* ext = m == "ct" || m == "mri" ? ".nii.gz"
                          : m == "xray"           ? ".dcm"
                          : m == "ultrasound"     ? ".png"
                                                  : ".mp4";
        row.path = dir / fmt::format("{}-{}-{}{}", m, c, i, ext);
        if (m == "ct") synth::write_ct(a, cfg, rng, row.path);
        if (m == "mri") synth::write_mri(a, cfg, rng, row.path);
        if (m == "xray") synth::write_xray(a, cfg, rng, row.path, row.group);
        if (m == "ultrasound") synth::write_ultrasound(a, cfg, rng, row.path);
        if (m == "endoscopy") synth::write_endoscopy(a, cfg, rng, row.path);
        samples.push_back(read_sample(row, dir.path(), pre));
        const Sample& s = samples.back();
        // Lesion centre in pixels of the preprocessed sample (normalised box -> [0, side)).
        const double x = a.lx + a.shift_x, y = a.ly + a.shift_y, z = a.lz + a.shift_z;
        auto px = [](double u, int64_t n) { return (u + 1) / 2 * static_cast<double>(n) - 0.5; };
        std::vector<double> acc;
        if (m == "ct" || m == "mri") {
          const int t = static_cast<int>(std::lround(px(z, s.T)));
          crop_spectrum(s, px(x, s.W), px(y, s.H), t - 1, t + 1, acc);
        } else if (m == "ultrasound") {
          crop_spectrum(s, px(x, s.W), px(y, s.H), 0, 0, acc);
        } else if (m == "xray") {
          crop_spectrum(s, px(x, s.W), px(-z, s.H), 0, 0, acc);
        }
        feats.push_back(acc.empty() ? spectral_features(s.pixels.data(), 1, s.C, s.T, s.H, s.W)
                                    : normalise(acc));
      }
    }
    std::vector<const Sample*> ptrs;
    for (const auto& s : samples) ptrs.push_back(&s);
    const Recall r = recall_at_1(ptrs, feats);
    // Mean cosine within and across classes.
    double same = 0, other = 0;
    int ns = 0, no = 0;
    for (size_t i = 0; i < feats.size(); ++i) {
      for (size_t j = 0; j < feats.size(); ++j) {
        if (i == j) continue;
        double d = 0;
        for (size_t k = 0; k < feats[i].size(); ++k) d += double(feats[i][k]) * feats[j][k];
        if (samples[i].labels == samples[j].labels)
          same += d, ++ns;
        else
          other += d, ++no;
      }
    }
    same /= ns, other /= no;
    std::printf(
        "lesion spectrum %-10s recall@1 %.3f  chance %.3f  same-class cos %.3f  other %.3f\n",
        m.c_str(), r.recall, r.chance, same, other);
    EXPECT_GT(same, other) << m;
    EXPECT_GT(r.recall, r.chance + 4 * r.sd) << m;
  }
}

// Class means of intensity (and, for endoscopy, of each RGB channel) do not
// separate the classes: one-way ANOVA over patient means (samples of one
// patient averaged), F below the 0.1 % point of F(5, 42) (about 5.0), and no
// class mean further than 1 within-class SD / sqrt(patients) * 3.5 from the
// grand mean.
TEST_P(LearningSynth, ClassMeansOfIntensityAndColourDoNotSeparateClasses) {
  for (const auto& m : kModalities) {
    const auto s = of_modality(samples(), m);
    const int64_t C = s[0]->C;
    for (int64_t c = 0; c < C; ++c) {
      std::map<std::string, std::pair<double, int>> patient;  // group -> (sum, count)
      std::map<std::string, std::string> label;
      for (const Sample* x : s) {
        const int64_t plane = x->T * x->H * x->W;
        double sum = 0;
        for (int64_t i = 0; i < plane; ++i) sum += x->pixels[c * plane + i];
        patient[x->group].first += sum / static_cast<double>(plane);
        patient[x->group].second += 1;
        label[x->group] = x->labels[0];
      }
      std::map<std::string, std::vector<double>> by_class;
      for (const auto& [g, v] : patient) by_class[label[g]].push_back(v.first / v.second);
      double grand = 0;
      size_t n = 0;
      for (const auto& [k, v] : by_class)
        for (double x : v) grand += x, ++n;
      grand /= static_cast<double>(n);
      double ss_between = 0, ss_within = 0, max_dev = 0;
      for (const auto& [k, v] : by_class) {
        double mean = 0;
        for (double x : v) mean += x;
        mean /= static_cast<double>(v.size());
        ss_between += static_cast<double>(v.size()) * (mean - grand) * (mean - grand);
        for (double x : v) ss_within += (x - mean) * (x - mean);
        max_dev = std::max(max_dev, std::abs(mean - grand));
      }
      const double groups = static_cast<double>(by_class.size());
      const double df_b = groups - 1, df_w = static_cast<double>(n) - groups;
      const double F = (ss_between / df_b) / (ss_within / df_w);
      const double within_sd = std::sqrt(ss_within / df_w);
      const double per_class = static_cast<double>(n) / groups;
      std::printf(
          "%-10s channel %ld: class-mean F %.2f, max |class - grand| %.2f, within sd %.2f\n",
          m.c_str(), static_cast<long>(c), F, max_dev, within_sd);
      EXPECT_LT(F, 5.0) << m << " channel " << c;
      EXPECT_LT(max_dev, 3.5 * within_sd / std::sqrt(per_class)) << m << " channel " << c;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, LearningSynth,
                         ::testing::Values("learning.toml", "learning-texture.toml"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param == "learning.toml" ? "learning" : "texture";
                         });

// Benchmark scale (run by hand, with --gtest_also_run_disabled_tests): the
// probes' recall@1 on the test split of configs/learning.toml's dataset,
// against chance, per modality. Reads M3RET_LEARNING_DATA/manifest.csv if it
// exists (e.g. from `m3ret synth --config configs/learning.toml --out DIR`),
// else generates the dataset there (or in a temporary folder) and prints the
// time; M3RET_LEARNING_SEED=S overrides synth.seed, M3RET_LEARNING_CONFIG=NAME
// reads configs/NAME instead (e.g. learning-texture.toml).
TEST(LearningSynthBenchmark, DISABLED_ProbesOnConfigsLearningToml) {
  config::Document doc;
  const char* config = std::getenv("M3RET_LEARNING_CONFIG");
  doc.add_file(testing::source_dir() / "configs" / (config && *config ? config : "learning.toml"));
  if (const char* sets = std::getenv("M3RET_LEARNING_SET")) {  // KEY=VALUE;KEY=VALUE
    const std::string all = sets;
    for (size_t at = 0; at < all.size();) {
      const size_t end = std::min(all.find(';', at), all.size());
      if (end > at) doc.add_override(all.substr(at, end - at));
      at = end + 1;
    }
  }
  SynthConfig synth;
  PreprocessConfig pre;
  doc.bind("synth", synth);
  doc.bind("preprocess", pre);
  if (const char* seed = std::getenv("M3RET_LEARNING_SEED")) synth.seed = std::atoll(seed);
  std::unique_ptr<testing::TempDir> tmp;
  stdfs::path dir;
  if (const char* env = std::getenv("M3RET_LEARNING_DATA")) {
    dir = env;
  } else {
    tmp = std::make_unique<testing::TempDir>("learning-bench");
    dir = tmp->path();
  }
  if (!stdfs::exists(dir / "manifest.csv")) {
    const auto t0 = std::chrono::steady_clock::now();
    synthesize(synth, dir);
    std::printf("synthesize: %.1f s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const auto all = read_all(dir / "manifest.csv", pre);
  for (auto [name, f] :
       {std::pair<const char*, Featuriser>{"raw-pixels", &eval::raw_pixel_features},
        std::pair<const char*, Featuriser>{"histogram", &eval::histogram_features},
        std::pair<const char*, Featuriser>{"spectral", &spectral_features}}) {
    if (const char* only = std::getenv("M3RET_LEARNING_PROBE");  // a comma-separated list
        only && *only &&
        ("," + std::string(only) + ",").find("," + std::string(name) + ",") == std::string::npos)
      continue;
    for (const auto& m : kModalities) {
      std::vector<const Sample*> s;
      for (const auto& x : all)
        if (x.modality == m && x.split == "test") s.push_back(&x);
      if (s.empty()) continue;
      const Recall r = recall_at_1(s, featurise(s, f));
      std::printf("%-10s %-10s test split: %zu samples, recall@1 %.3f  chance %.3f  (sd %.3f)\n",
                  name, m.c_str(), s.size(), r.recall, r.chance, r.sd);
      for (const auto& [label, v] : r.per_class) std::printf("  %s %.3f", label.c_str(), v);
      std::printf("\n");
    }
  }
}

// synth.lesion_shape = "cylinder": the lesion disc extruded along the viewing
// axis, so that every slice of a CT/MRI volume (and every ray of an X-ray)
// through the lesion meets the whole disc, whose phases are balanced 50/50;
// a sphere's slices are smaller discs whose balance varies, so the volume's
// share of each phase (what an intensity histogram sees) varies by class and
// patient. The shape draws nothing: the dataset is otherwise the same.
TEST(LearningSynthPattern, CylinderLesionKeepsTheDiscInEverySlice) {
  const std::vector<std::string> classes = {"stripes", "blobs",  "checker",
                                            "rings",   "spokes", "dots"};
  auto coord = [](int i, int n) { return (i + 0.5) / n * 2.0 - 1.0; };
  const int n = 64, d = 16;  // the CT grid of configs/learning.toml
  double off_sphere = 0, off_cylinder = 0;
  int samples = 0;
  for (bool cylinder : {false, true}) {
    synth::PatternGeometry g{0.54, 0.66, 0.17, 0.23, 0, 360, 0.5, 1.0, cylinder};
    for (const auto& cls : classes) {
      for (int i = 0; i < 12; ++i) {
        synth::Rng rng(100 + i);
        auto a = synth::make_sample(
            synth::make_patient(synth::Finding::pattern, rng, synth::pattern_of(cls), g), rng);
        a.ax = a.ay = a.az = 10;  // the body out of the way: it clips a large lesion
        // Each axial slice's lesion voxels (+1 hi, -1 lo, 0 elsewhere).
        std::vector<std::vector<int>> slices;
        int lesion = 0, hi = 0;
        for (int z = 0; z < d; ++z) {
          std::vector<int> t(n * n, 0);
          int in = 0;
          for (int y = 0; y < n; ++y)
            for (int x = 0; x < n; ++x) {
              const auto tissue = a.at(coord(x, n), coord(y, n), coord(z, d));
              const int v = tissue == synth::Tissue::lesion_hi   ? 1
                            : tissue == synth::Tissue::lesion_lo ? -1
                                                                 : 0;
              t[y * n + x] = v, in += v != 0, hi += v > 0;
            }
          lesion += in;
          if (in > 0) slices.push_back(std::move(t));
        }
        ASSERT_GE(slices.size(), 3u) << cls;
        const double share = static_cast<double>(hi) / lesion;
        if (cylinder) {
          off_cylinder += std::abs(share - 0.5);
          // Every slice through the cylinder is the same disc with the same pattern.
          for (size_t k = 1; k < slices.size(); ++k)
            EXPECT_EQ(slices[k], slices[0]) << cls << " patient " << i << " slice " << k;
          // The sphere's height (2 r) against the cylinder's (4/3 r), in slices of 2/d.
          EXPECT_NEAR(slices.size(), 4.0 / 3.0 * a.lr * d / 2, 1.0) << cls;
        } else {
          off_sphere += std::abs(share - 0.5);
          ++samples;
          EXPECT_NE(slices.front(), slices[slices.size() / 2]) << cls << " patient " << i;
        }
      }
    }
  }
  // The disc's balance holds in the cylinder's volume, not in the sphere's.
  off_sphere /= samples, off_cylinder /= samples;
  EXPECT_LT(off_cylinder, 0.6 * off_sphere) << off_cylinder << " vs " << off_sphere;

  // Frontal plane (X-ray): the cylinder runs along y, the beam.
  synth::PatternGeometry g{0.54, 0.66, 0.17, 0.23, 0, 360, 0.5, 1.0, true};
  synth::Rng rng(7);
  auto a = synth::make_sample(
      synth::make_patient(synth::Finding::pattern, rng, synth::Pattern::checker, g), rng);
  a.plane = synth::PatternPlane::frontal;
  a.ax = a.ay = a.az = 10;
  std::map<int, int> lengths;  // voxels of lesion along a ray -> rays
  for (int z = 0; z < n; ++z)
    for (int x = 0; x < n; ++x) {
      int in = 0;
      for (int y = 0; y < n; ++y) {
        const auto t = a.at(coord(x, n), coord(y, n), coord(z, n));
        in += t == synth::Tissue::lesion_hi || t == synth::Tissue::lesion_lo;
      }
      if (in > 0) ++lengths[in];
    }
  // Every ray through the disc crosses the same length of lesion (a sphere's chords vary
  // from 0 to 2 r): one grid length, give or take the voxel rounding.
  ASSERT_FALSE(lengths.empty());
  EXPECT_LE(lengths.rbegin()->first - lengths.begin()->first, 1) << lengths.size() << " lengths";
  int rays = 0;
  for (const auto& [len, count] : lengths) rays += count;
  EXPECT_GT(rays, 500);

  // No draws: the same patient either way. A shape it does not know is refused by key.
  synth::PatternGeometry sphere{0.54, 0.66, 0.17, 0.23}, cyl = sphere;
  cyl.cylinder = true;
  synth::Rng r1(9), r2(9);
  const auto p1 = synth::make_patient(synth::Finding::pattern, r1, synth::Pattern::rings, sphere);
  const auto p2 = synth::make_patient(synth::Finding::pattern, r2, synth::Pattern::rings, cyl);
  EXPECT_EQ(p1.lr, p2.lr);
  EXPECT_EQ(p1.pattern.phase_u, p2.pattern.phase_u);
  EXPECT_EQ(r1.bits(), r2.bits());
  EXPECT_FALSE(p1.cylinder);
  EXPECT_TRUE(p2.cylinder);
  expect_synth_override_refused("synth.lesion_shape=cube", "synth.lesion_shape");
}

}  // namespace
}  // namespace m3ret::data
