#include "data/synth.h"

#include <algorithm>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/parallel.h"
#include "data/manifest.h"
#include "data/synth_anatomy.h"
#include "data/synth_render.h"

namespace m3ret::data {

namespace stdfs = std::filesystem;

namespace {

const char* extension(const std::string& modality) {
  if (modality == "ct" || modality == "mri") return ".nii.gz";
  if (modality == "xray") return ".dcm";
  if (modality == "ultrasound") return ".png";
  return ".mp4";
}

struct Job {
  ManifestRow row;
  std::string modality;
  synth::Anatomy anatomy;
  uint64_t seed = 0;
};

void render(const Job& job, const SynthConfig& cfg) {
  synth::Rng rng(job.seed);
  const auto& m = job.modality;
  if (m == "ct")
    synth::write_ct(job.anatomy, cfg, rng, job.row.path);
  else if (m == "mri")
    synth::write_mri(job.anatomy, cfg, rng, job.row.path);
  else if (m == "xray")
    synth::write_xray(job.anatomy, cfg, rng, job.row.path, job.row.group);
  else if (m == "ultrasound")
    synth::write_ultrasound(job.anatomy, cfg, rng, job.row.path);
  else
    synth::write_endoscopy(job.anatomy, cfg, rng, job.row.path);
}

}  // namespace

void synthesize(const SynthConfig& cfg, const stdfs::path& out_dir) {
  cfg.validate();
  const stdfs::path root = stdfs::absolute(out_dir).lexically_normal();
  const stdfs::path manifest = root / "manifest.csv";
  std::error_code ec;
  stdfs::create_directories(root, ec);
  if (ec) throw Error(fmt::format("cannot create {}: {}", root.string(), ec.message()));
  // An old manifest would claim completeness while files are being replaced.
  stdfs::remove(manifest, ec);

  std::vector<Job> jobs;
  for (const auto& modality : cfg.modalities) {
    const uint64_t mi =
        std::find(synth::modality_names().begin(), synth::modality_names().end(), modality) -
        synth::modality_names().begin();
    // Patients of every class, numbered in a seeded random order so that ids
    // say nothing about the class; the split is drawn per class.
    struct Patient {
      size_t cls;
      int64_t index;
      bool test;
    };
    std::vector<Patient> patients;
    synth::Rng order_rng(synth::mix_seed(cfg.seed, mi, 0xA11CE));
    for (size_t c = 0; c < cfg.classes.size(); ++c) {
      std::vector<int64_t> idx(cfg.patients_per_class);
      for (int64_t p = 0; p < cfg.patients_per_class; ++p) idx[p] = p;
      for (int64_t i = cfg.patients_per_class - 1; i > 0; --i) {
        std::swap(idx[i], idx[order_rng.bits() % static_cast<uint64_t>(i + 1)]);
      }
      const auto n_test =
          static_cast<int64_t>(std::lround(cfg.test_fraction * cfg.patients_per_class));
      for (int64_t p = 0; p < cfg.patients_per_class; ++p) {
        patients.push_back({c, idx[p], modality == "mri" || p < n_test});
      }
    }
    for (size_t i = patients.size(); i > 1; --i) {
      std::swap(patients[i - 1], patients[order_rng.bits() % i]);
    }
    for (size_t k = 0; k < patients.size(); ++k) {
      const auto& pt = patients[k];
      const std::string& cls = cfg.classes[pt.cls];
      const uint64_t ci = std::find(synth::class_names().begin(), synth::class_names().end(), cls) -
                          synth::class_names().begin();
      synth::Rng patient_rng(synth::mix_seed(cfg.seed, mi, ci, static_cast<uint64_t>(pt.index)));
      const synth::Finding finding = synth::finding_of(cls);
      const synth::Anatomy patient = synth::make_patient(
          finding, patient_rng,
          finding == synth::Finding::pattern ? synth::pattern_of(cls) : synth::Pattern::stripes_h,
          synth::PatternGeometry{cfg.lesion_diameter[0], cfg.lesion_diameter[1],
                                 cfg.pattern_period[0], cfg.pattern_period[1], cfg.pattern_tilt[0],
                                 cfg.pattern_tilt[1], cfg.pattern_offset, cfg.pattern_warp,
                                 cfg.lesion_shape == "cylinder"});
      const std::string group = fmt::format("{}-p{:04d}", modality, k);
      for (int64_t s = 0; s < cfg.samples_per_patient; ++s) {
        Job job;
        job.modality = modality;
        job.anatomy = synth::make_sample(patient, patient_rng);
        job.seed = synth::mix_seed(cfg.seed, mi * 16 + ci, static_cast<uint64_t>(pt.index),
                                   static_cast<uint64_t>(s) + 1);
        job.row.path = root / modality / fmt::format("{}-s{}{}", group, s, extension(modality));
        job.row.modality = modality;
        job.row.labels = {cls};
        job.row.group = group;
        job.row.split = pt.test ? "test" : "train";
        jobs.push_back(std::move(job));
      }
    }
  }

  // The first sample of each modality is rendered alone: ITK's image-IO factories and GDCM's
  // dictionaries initialise lazily on first use, and that first use is not thread-safe (a
  // concurrent first write crashed `m3ret synth` once in a test run).
  std::vector<bool> done(jobs.size(), false);
  std::set<std::string> seen;
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (seen.insert(jobs[i].modality).second) {
      render(jobs[i], cfg);
      done[i] = true;
    }
  }
  // The rest in parallel; the first error stops the others and is rethrown here.
  parallel_for(jobs.size(), std::min<size_t>(4, std::thread::hardware_concurrency()),
               [&](size_t i) {
                 if (!done[i]) render(jobs[i], cfg);
               });

  std::vector<ManifestRow> rows;
  rows.reserve(jobs.size());
  for (auto& j : jobs) rows.push_back(std::move(j.row));
  write_manifest(manifest, rows);
  spdlog::info("synth: wrote {} samples ({} modalities, {} classes) to {}", rows.size(),
               cfg.modalities.size(), cfg.classes.size(), root.string());
}

}  // namespace m3ret::data
