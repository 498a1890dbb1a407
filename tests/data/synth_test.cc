// The synthetic hybrid dataset: real files, a manifest whose every row reads
// back, classes shared across modalities, patients with several samples,
// patient-level splits, determinism.
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <itkGDCMImageIO.h>
#include <itkImageFileReader.h>
#include <itkMetaDataObject.h>

#include "core/config.h"
#include "data/itk_image.h"
#include "data/manifest.h"
#include "data/reader.h"
#include "data/synth.h"
#include "test_util.h"

namespace m3ret::data {
namespace {

namespace stdfs = std::filesystem;

SynthConfig tiny() {
  SynthConfig c;
  c.patients_per_class = 2;
  c.samples_per_patient = 2;
  c.test_fraction = 0.5;
  c.image_size = 32;
  c.volume_size = 20;
  c.volume_slices = 10;
  c.video_frames = 4;
  c.video_width = 32;
  c.video_height = 24;
  return c;
}

PreprocessConfig small_cfg() {
  PreprocessConfig cfg;
  cfg.image_size = 32;
  cfg.volume_size = 16;
  cfg.volume_slices = 8;
  cfg.video_frames = 4;
  return cfg;
}

TEST(DataSynth, ConfigValidationNamesTheKey) {
  SynthConfig c;
  EXPECT_NO_THROW(c.validate());
  c.classes = {"normal", "tumour"};
  EXPECT_THROW(c.validate(), config::Error);
  c = SynthConfig{};
  c.classes = {"normal"};
  EXPECT_THROW(c.validate(), config::Error);
  c = SynthConfig{};
  c.modalities = {"ct", "pet"};
  try {
    c.validate();
    FAIL();
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("synth.modalities"), std::string::npos);
  }
  c = SynthConfig{};
  c.video_width = 33;
  EXPECT_THROW(c.validate(), config::Error);
}

TEST(DataSynth, WritesAManifestWhoseRowsAllReadBack) {
  testing::TempDir dir("synth");
  const auto cfg = tiny();
  synthesize(cfg, dir / "ds");
  const auto manifest = dir / "ds" / "manifest.csv";
  ASSERT_TRUE(stdfs::exists(manifest));
  auto rows = read_manifest(manifest, /*check_paths=*/true);
  const size_t per_modality = cfg.classes.size() * cfg.patients_per_class * cfg.samples_per_patient;
  ASSERT_EQ(rows.size(), 5 * per_modality);

  std::map<std::string, std::set<std::string>> classes_by_modality;
  std::map<std::string, int> samples_by_group;
  std::map<std::string, std::set<std::string>> splits_by_group;
  std::map<std::string, std::string> class_by_group;
  std::set<std::string> ids;
  for (const auto& r : rows) {
    Sample s = read_sample(r, manifest.parent_path(), small_cfg());
    ASSERT_EQ(s.labels.size(), 1u);
    EXPECT_TRUE(ids.insert(s.id).second) << s.id;
    classes_by_modality[s.modality].insert(s.labels[0]);
    samples_by_group[s.group]++;
    splits_by_group[s.group].insert(s.split);
    if (class_by_group.count(s.group)) {
      EXPECT_EQ(class_by_group[s.group], s.labels[0]);
    }
    class_by_group[s.group] = s.labels[0];
    if (s.modality == "ct" || s.modality == "mri") {
      EXPECT_EQ(s.C, 1);
      EXPECT_EQ(s.T, 8);
      EXPECT_EQ(s.H, 16);
      EXPECT_EQ(s.W, 16);
    } else if (s.modality == "endoscopy") {
      EXPECT_EQ(s.C, 3);
      EXPECT_EQ(s.T, 4);
      EXPECT_EQ(s.H, 32);
    } else {
      EXPECT_EQ(s.C, 1);
      EXPECT_EQ(s.T, 1);
      EXPECT_EQ(s.H, 32);
    }
    if (s.modality == "mri") {
      EXPECT_EQ(s.split, "test");
    }
  }
  // Real formats per modality.
  auto ext = [](const ManifestRow& r) { return r.path.filename().string(); };
  for (const auto& r : rows) {
    const std::string name = ext(r);
    if (r.modality == "ct" || r.modality == "mri") {
      EXPECT_TRUE(name.size() > 7 && name.substr(name.size() - 7) == ".nii.gz");
    }
    if (r.modality == "xray") {
      EXPECT_EQ(r.path.extension(), ".dcm");
    }
    if (r.modality == "ultrasound") {
      EXPECT_EQ(r.path.extension(), ".png");
    }
    if (r.modality == "endoscopy") {
      EXPECT_EQ(r.path.extension(), ".mp4");
    }
  }
  // Every modality holds every class.
  ASSERT_EQ(classes_by_modality.size(), 5u);
  for (const auto& [m, cls] : classes_by_modality) {
    EXPECT_EQ(cls, std::set<std::string>(cfg.classes.begin(), cfg.classes.end())) << m;
  }
  // Patients: several samples each, one split each; both splits used.
  std::set<std::string> splits;
  for (const auto& [g, n] : samples_by_group) {
    EXPECT_EQ(n, cfg.samples_per_patient) << g;
    EXPECT_EQ(splits_by_group[g].size(), 1u) << g;
    splits.insert(*splits_by_group[g].begin());
  }
  EXPECT_EQ(splits, (std::set<std::string>{"train", "test"}));
  // No temporary files left behind.
  for (const auto& e : stdfs::recursive_directory_iterator(dir / "ds")) {
    EXPECT_EQ(e.path().filename().string().rfind(".tmp", 0), std::string::npos) << e.path();
  }
}

TEST(DataSynth, XrayIsDicomWithModalityDX) {
  testing::TempDir dir("synth");
  auto cfg = tiny();
  cfg.modalities = {"xray"};
  synthesize(cfg, dir.path());
  auto rows = read_manifest(dir / "manifest.csv");
  ASSERT_FALSE(rows.empty());
  itkio::register_factories();
  auto io = itk::GDCMImageIO::New();
  io->SetFileName(rows[0].path.string());
  io->ReadImageInformation();
  std::string modality;
  itk::ExposeMetaData<std::string>(io->GetMetaDataDictionary(), "0008|0060", modality);
  EXPECT_NE(modality.find("DX"), std::string::npos);
  EXPECT_EQ(io->GetComponentType(), itk::IOComponentEnum::USHORT);
}

TEST(DataSynth, DeterministicForASeedAndDifferentAcrossSeeds) {
  testing::TempDir dir("synth");
  auto cfg = tiny();
  cfg.modalities = {"ct", "ultrasound", "endoscopy"};
  cfg.patients_per_class = 1;
  synthesize(cfg, dir / "a");
  synthesize(cfg, dir / "b");
  cfg.seed = 99;
  synthesize(cfg, dir / "c");
  auto ra = read_manifest(dir / "a" / "manifest.csv");
  auto rb = read_manifest(dir / "b" / "manifest.csv");
  auto rc = read_manifest(dir / "c" / "manifest.csv");
  ASSERT_EQ(ra.size(), rb.size());
  int differing = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    Sample a = read_sample(ra[i], dir / "a", small_cfg());
    Sample b = read_sample(rb[i], dir / "b", small_cfg());
    Sample c = read_sample(rc[i], dir / "c", small_cfg());
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(a.labels, b.labels);
    EXPECT_EQ(a.pixels, b.pixels) << a.id;
    differing += a.pixels != c.pixels;
  }
  EXPECT_EQ(differing, static_cast<int>(ra.size()));
}

}  // namespace
}  // namespace m3ret::data
