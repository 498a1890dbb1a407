// `m3ret import`: the verb on a BUSI replica, its help and its error lines.
#include <algorithm>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/fs.h"
#include "data/manifest.h"
#include "data_test_util.h"
#include "test_util.h"

namespace m3ret::data {
namespace {

namespace stdfs = std::filesystem;
using ::testing::HasSubstr;
using testing::run_command;

std::string bin() { return testing::m3ret_binary().string(); }

void busi_replica(const stdfs::path& base) {
  std::vector<uint8_t> v(40 * 32);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(i % 230);
  for (const char* cls : {"benign", "malignant", "normal"}) {
    stdfs::create_directories(base / cls);
    testutil::write_image<uint8_t>(base / cls / (std::string(cls) + " (1).png"), v, 40, 32);
    testutil::write_image<uint8_t>(base / cls / (std::string(cls) + " (1)_mask.png"), v, 40, 32);
  }
}

TEST(ImportCli, WritesTheManifest) {
  testing::TempDir dir("import-cli");
  busi_replica(dir / "dl/Dataset_BUSI_with_GT");
  std::string out;
  ASSERT_EQ(run_command(bin() + " import busi --root " + (dir / "dl").string() + " --out " +
                            (dir / "busi.csv").string(),
                        &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("wrote"));
  const auto rows = read_manifest(dir / "busi.csv", true);
  ASSERT_EQ(rows.size(), 3u);
  for (const auto& r : rows) EXPECT_EQ(r.modality, "ultrasound");
  // --modality overrides.
  ASSERT_EQ(run_command(bin() + " import busi --modality other --root " + (dir / "dl").string() +
                            " --out " + (dir / "o.csv").string(),
                        &out),
            0)
      << out;
  EXPECT_EQ(read_manifest(dir / "o.csv")[0].modality, "other");
  // Run again into the same manifest (which the user may have edited): refused, naming the
  // choices, and the file is left as it was; with --overwrite it is written again.
  std::ofstream(dir / "o.csv", std::ios::app) << "# edited by hand\n";
  const std::string edited = m3ret::fs::read_file(dir / "o.csv");
  const std::string again =
      bin() + " import busi --root " + (dir / "dl").string() + " --out " + (dir / "o.csv").string();
  EXPECT_NE(run_command(again, &out), 0);
  EXPECT_THAT(out, HasSubstr("import: " + dir.path().string() +
                             " already holds a manifest (o.csv); start over in a new --out or "
                             "with --overwrite"));
  EXPECT_EQ(m3ret::fs::read_file(dir / "o.csv"), edited);
  ASSERT_EQ(run_command(again + " --overwrite", &out), 0) << out;
  EXPECT_EQ(read_manifest(dir / "o.csv")[0].modality, "ultrasound");
}

TEST(ImportCli, HelpListsTheDatasets) {
  std::string out;
  ASSERT_EQ(run_command(bin() + " import --help", &out), 0);
  for (const char* name :
       {"chestxray14", "hyperkvasir", "busi", "medmnist", "folder", "dicom", "chexpert",
        "mimic-cxr", "totalsegmentator", "kvasir-capsule", "--set",
        "option uncertain=negative|positive (default negative)",
        "option views=all|frontal (default all)", "option labels=pathology|study_type"}) {
    EXPECT_THAT(out, HasSubstr(name));
  }
}

TEST(ImportCli, ErrorsAreOneLine) {
  testing::TempDir dir("import-cli");
  std::string out;
  EXPECT_EQ(run_command(bin() + " import nope --root " + dir.path().string() + " --out " +
                            (dir / "m.csv").string(),
                        &out),
            2);  // a usage error, like any bad argument
  EXPECT_THAT(out,
              HasSubstr("m3ret: usage error: name: unknown dataset 'nope' (known: chestxray14,"));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_EQ(run_command(bin() + " import folder --root " + dir.path().string() + " --out " +
                            (dir / "m.csv").string(),
                        &out),
            1);
  EXPECT_THAT(out, HasSubstr("pass --modality"));
  EXPECT_FALSE(stdfs::exists(dir / "m.csv"));
}

TEST(ImportCli, LabelsFromACsv) {
  testing::TempDir dir("import-cli");
  busi_replica(dir / "dl/Dataset_BUSI_with_GT");
  std::ofstream(dir / "l.csv")
      << "image,finding,fold\nbenign (1),b1,train\nmalignant (1).png,m1,test\n";
  const std::string base = bin() + " import folder --modality ultrasound --root " +
                           (dir / "dl/Dataset_BUSI_with_GT").string() + " --out " +
                           (dir / "m.csv").string() + " --labels " + (dir / "l.csv").string();
  std::string out;
  ASSERT_EQ(
      run_command(base + " --id-column image --labels-column finding --split-column fold", &out), 0)
      << out;
  EXPECT_THAT(out, HasSubstr("skipped"));
  auto rows = read_manifest(dir / "m.csv");
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
  std::vector<std::string> got;
  for (const auto& r : rows) {
    if (r.path.filename().string().find("_mask") != std::string::npos) continue;
    got.push_back(r.labels.at(0) + "/" + r.split);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"b1/train", "m1/test"}));
  stdfs::remove(dir / "m.csv");
  EXPECT_EQ(run_command(base + " --id-column patient", &out), 1);
  EXPECT_THAT(
      out,
      HasSubstr("l.csv: no column 'patient' (--id-column); columns present: image, finding, fold"));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_FALSE(stdfs::exists(dir / "m.csv"));
}

const char kTotalSegHeader[] =
    "image_id;age;gender;institute;study_type;split;manufacturer;scanner_model;kvp;pathology;"
    "pathology_location\n";

// Two subjects of TotalSegmentator v2 (s0001: a test scan with a liver tumour).
void totalsegmentator_replica(const stdfs::path& root) {
  std::vector<int16_t> hu(6 * 6 * 4);
  for (size_t i = 0; i < hu.size(); ++i) hu[i] = static_cast<int16_t>(i * 40 % 1500) - 700;
  for (const char* s : {"s0000", "s0001"}) {
    stdfs::create_directories(root / s);
    testutil::write_volume<int16_t>(root / s / "ct.nii.gz", hu, {6, 6, 4}, {1.5, 1.5, 1.5});
  }
  std::ofstream(root / "meta.csv")
      << kTotalSegHeader << "s0000;60;m;A;ct thorax;train;GE;X;120;no_pathology;\n"
      << "s0001;70;f;B;ct abdomen;test;GE;X;120;tumor;liver\n";
}

TEST(ImportCli, TotalSegmentatorThroughTheBinary) {
  testing::TempDir dir("import-cli");
  const stdfs::path root = dir / "Totalsegmentator_dataset_v201";
  totalsegmentator_replica(root);
  const std::string header = kTotalSegHeader;
  const std::string cmd = bin() + " import totalsegmentator --root " + root.string() + " --out " +
                          (dir / "ts.csv").string();
  std::string out;
  ASSERT_EQ(run_command(cmd, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("wrote"));
  auto rows = read_manifest(dir / "ts.csv", true);
  ASSERT_EQ(rows.size(), 2u);
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
  EXPECT_EQ(rows[1].labels, std::vector<std::string>{"tumor"});
  EXPECT_EQ(rows[1].split, "test");
  EXPECT_EQ(rows[1].modality, "ct");
  // A bad split is one line naming meta.csv and the line; nothing is written.
  stdfs::remove(dir / "ts.csv");
  std::ofstream(root / "meta.csv") << header << "s0000;60;m;A;ct thorax;training;GE;X;120;;\n";
  EXPECT_EQ(run_command(cmd, &out), 1);
  EXPECT_THAT(out, HasSubstr("meta.csv:2: split 'training' is not train, val or test"));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_FALSE(stdfs::exists(dir / "ts.csv"));
}

// --option KEY=VALUE reaches the importer; an option the importer does not take, a value it
// does not accept, or text without '=' is a usage error (exit 2, one line) and writes nothing.
TEST(ImportCli, OptionsReachTheImporterAndBadOnesAreUsageErrors) {
  testing::TempDir dir("import-cli");
  const stdfs::path root = dir / "Totalsegmentator_dataset_v201";
  totalsegmentator_replica(root);
  const std::string cmd = bin() + " import totalsegmentator --root " + root.string() + " --out " +
                          (dir / "ts.csv").string();
  std::string out;
  ASSERT_EQ(run_command(cmd + " --option labels=study_type", &out), 0) << out;
  auto rows = read_manifest(dir / "ts.csv", true);
  ASSERT_EQ(rows.size(), 2u);
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
  EXPECT_EQ(rows[1].labels, std::vector<std::string>{"ct abdomen"});
  stdfs::remove(dir / "ts.csv");
  const std::pair<const char*, const char*> bad[] = {
      {"labels=nope",
       "m3ret: usage error: --option: import totalsegmentator: option labels=nope: expected one of "
       "pathology, study_type"},
      {"colour=red",
       "m3ret: usage error: --option: import totalsegmentator: unknown option 'colour' "
       "(options of totalsegmentator: labels)"},
      {"labels", "m3ret: usage error: --option: import: option 'labels' is not KEY=VALUE"}};
  for (const auto& [option, message] : bad) {
    EXPECT_EQ(run_command(cmd + " --option " + option, &out), 2) << out;
    EXPECT_EQ(out, std::string(message) + "\n");
    EXPECT_FALSE(stdfs::exists(dir / "ts.csv"));
  }
}

}  // namespace
}  // namespace m3ret::data
