// Importers, each on a small replica of the real layout (docs/data.md and
// /work/shared/DATASETS.md) that the test builds with real files.
#include <array>
#include <fstream>
#include <map>

#include <sys/stat.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "core/fs.h"
#include "data/dicom.h"
#include "data/importers.h"
#include "data/reader.h"
#include "data/video_writer.h"
#include "data_test_util.h"
#include "test_util.h"

namespace m3ret::data {
namespace {

namespace stdfs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testutil::small_cfg;

void text(const stdfs::path& p, const std::string& content) {
  stdfs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << content;
}

// A small non-constant 8-bit image (PNG/JPEG by extension).
void image(const stdfs::path& p, int seed = 0) {
  stdfs::create_directories(p.parent_path());
  std::vector<uint8_t> v(40 * 32);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>((i * 7 + seed * 13) % 200 + 20);
  testutil::write_image<uint8_t>(p, v, 40, 32);
}

void clip(const stdfs::path& p) {
  stdfs::create_directories(p.parent_path());
  std::vector<uint8_t> rgb(6 * 32 * 32 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 5);
  video::write(p, rgb, 6, 32, 32, 10, "mpeg4");
}

// Runs the importer, then reads the manifest it wrote back and every sample.
std::vector<ManifestRow> import_and_read(const std::string& name, const stdfs::path& root,
                                         const stdfs::path& out, const std::string& modality = "",
                                         PreprocessConfig cfg = small_cfg()) {
  ImportOptions o;
  o.root = root;
  o.out = out;
  o.modality = modality;
  const ImportResult r = import_dataset(name, o);
  auto rows = read_manifest(out, /*check_paths=*/true);
  EXPECT_EQ(rows.size(), r.rows.size());
  for (const auto& row : rows) {
    EXPECT_EQ(row.dataset, name) << row.path;  // the dataset column: the importer's name
    Sample s = read_sample(row, out.parent_path(), cfg);
    EXPECT_EQ(static_cast<int64_t>(s.pixels.size()), s.numel()) << row.path;
  }
  return rows;
}

std::map<std::string, ManifestRow> by_name(const std::vector<ManifestRow>& rows) {
  std::map<std::string, ManifestRow> m;
  for (const auto& r : rows) m[r.path.filename().string()] = r;
  return m;
}

TEST(DataImport, ChestXray14) {
  testing::TempDir dir("import");
  const auto root = dir / "cxr14";
  // The real header: two bracketed cells whose commas split them into four columns.
  text(root / "Data_Entry_2017.csv",
       "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
       "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"
       "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143,\n"
       "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143,\n"
       "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171,\n"
       "00000003_000.png,Hernia,0,3,81,F,PA,2582,2991,0.143,0.143,\n");
  image(root / "images_001/images/00000001_000.png", 1);
  image(root / "images_001/images/00000001_001.png", 2);
  image(root / "images_002/images/00000002_000.png", 3);  // 00000003_000.png is not downloaded
  text(root / "train_val_list.txt", "00000001_000.png\n00000001_001.png\n");
  text(root / "test_list.txt", "00000002_000.png\n00000003_000.png\n");
  auto rows = by_name(import_and_read("chestxray14", root, dir / "cxr.csv"));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_THAT(rows["00000001_001.png"].labels, ElementsAre("Cardiomegaly", "Emphysema"));
  EXPECT_THAT(rows["00000002_000.png"].labels, ElementsAre("No Finding"));
  EXPECT_EQ(rows["00000001_000.png"].group, "chestxray14:1");
  EXPECT_EQ(rows["00000001_001.png"].group, "chestxray14:1");
  EXPECT_EQ(rows["00000002_000.png"].group, "chestxray14:2");
  EXPECT_EQ(rows["00000001_000.png"].split, "train");
  EXPECT_EQ(rows["00000002_000.png"].split, "test");
  EXPECT_EQ(rows["00000001_000.png"].modality, "xray");
  // The missing image is listed with its reason next to the manifest.
  std::ifstream skipped(dir / "cxr.skipped.csv");
  std::string all((std::istreambuf_iterator<char>(skipped)), {});
  EXPECT_THAT(all,
              HasSubstr("00000003_000.png,listed in Data_Entry_2017.csv line 5 but not found"));
  // A wrong header is named with the file.
  text(dir / "bad/Data_Entry_2017.csv", "Image,Labels\n");
  ImportOptions o{dir / "bad", dir / "bad.csv", ""};
  try {
    import_dataset("chestxray14", o);
    ADD_FAILURE() << "a bad header was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("Data_Entry_2017.csv:1: no column 'Image Index'"));
  }
  EXPECT_FALSE(stdfs::exists(dir / "bad.csv"));
}

TEST(DataImport, HyperKvasirImagesAndVideos) {
  testing::TempDir dir("import");
  const auto root = dir / "hyper-kvasir";
  image(root / "labeled-images/lower-gi-tract/pathological-findings/polyps/a.jpg", 1);
  image(root / "labeled-images/lower-gi-tract/pathological-findings/polyps/b.jpg", 2);
  image(root / "labeled-images/upper-gi-tract/anatomical-landmarks/z-line/c.jpg", 3);
  text(root / "official_splits/2_fold_split.csv",
       "file-name;class-name;split-index\na.jpg;polyps;0\nc.jpg;z-line;1\n");
  clip(root / "labeled-videos/lower-gi-tract/pathological-findings/polyps/v1.avi");
  clip(root / "labeled-videos/flat.avi");
  clip(root / "labeled-videos/unknown.avi");
  text(root / "hyper-kvasir-video-metadata.csv",
       "file-name;finding;width;height;number-of-frames;fps;length;kilobytes\n"
       "flat;ulcerative-colitis-grade-1;32;32;6;10;0.6;10\n");
  image(root / "unlabeled-images/images/u1.jpg", 4);
  image(root / "unlabeled-images/images/u2.jpg", 5);
  text(root / "unlabeled-images/images/readme.txt", "not a sample");
  auto rows = by_name(import_and_read("hyperkvasir", root, dir / "hk.csv"));
  ASSERT_EQ(rows.size(), 7u);
  // Unlabelled images: no labels, always train (pretraining only; evaluation reads the test split).
  for (const char* u : {"u1.jpg", "u2.jpg"}) {
    EXPECT_TRUE(rows[u].labels.empty()) << u;
    EXPECT_EQ(rows[u].split, "train") << u;
    EXPECT_EQ(rows[u].group, "") << u;
  }
  EXPECT_THAT(rows["a.jpg"].labels, ElementsAre("polyps"));
  EXPECT_THAT(rows["c.jpg"].labels, ElementsAre("z-line"));
  EXPECT_EQ(rows["a.jpg"].split, "train");
  EXPECT_EQ(rows["c.jpg"].split, "test");
  EXPECT_EQ(rows["b.jpg"].split, "");
  EXPECT_THAT(rows["v1.avi"].labels, ElementsAre("polyps"));
  EXPECT_THAT(rows["flat.avi"].labels, ElementsAre("ulcerative-colitis-grade-1"));
  EXPECT_EQ(rows.count("unknown.avi"), 0u);
  for (const auto& [name, row] : rows) EXPECT_EQ(row.modality, "endoscopy") << name;
}

TEST(DataImport, HyperKvasirUnlabelledImagesAlone) {
  testing::TempDir dir("import");
  const auto root = dir / "hyper-kvasir";
  image(root / "unlabeled-images/images/0a1b.jpg", 1);
  auto rows = import_and_read("hyperkvasir", root, dir / "hk.csv");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_TRUE(rows[0].labels.empty());
  EXPECT_EQ(rows[0].split, "train");
  // None of the three folders: the error names them and the root.
  stdfs::create_directories(dir / "other/images");
  ImportOptions o{dir / "other", dir / "o.csv", ""};
  try {
    import_dataset("hyperkvasir", o);
    ADD_FAILURE() << "a root without HyperKvasir folders was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("none of labeled-images/, labeled-videos/, unlabeled-images/ in " +
                          (dir / "other").string()));
  }
}

TEST(DataImport, BusiSkipsMasks) {
  testing::TempDir dir("import");
  const auto root = dir / "busi";
  const auto base = root / "Dataset_BUSI_with_GT";
  image(base / "benign/benign (1).png", 1);
  image(base / "benign/benign (1)_mask.png", 2);
  image(base / "malignant/malignant (1).png", 3);
  image(base / "malignant/malignant (1)_mask.png", 4);
  image(base / "malignant/malignant (1)_mask_1.png", 5);
  image(base / "normal/normal (1).png", 6);
  auto rows = by_name(import_and_read("busi", root, dir / "busi.csv"));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_THAT(rows["benign (1).png"].labels, ElementsAre("benign"));
  EXPECT_THAT(rows["malignant (1).png"].labels, ElementsAre("malignant"));
  EXPECT_EQ(rows["normal (1).png"].modality, "ultrasound");
  // Pointing at Dataset_BUSI_with_GT itself works too; a missing class folder is named.
  EXPECT_EQ(import_and_read("busi", base, dir / "busi2.csv").size(), 3u);
  stdfs::remove_all(base / "normal");
  ImportOptions o{root, dir / "busi3.csv", ""};
  EXPECT_THROW(
      {
        try {
          import_dataset("busi", o);
        } catch (const Error& e) {
          EXPECT_THAT(e.what(), HasSubstr("class folder 'normal'"));
          throw;
        }
      },
      Error);
}

TEST(DataImport, FolderPerClassWithAndWithoutSplits) {
  testing::TempDir dir("import");
  image(dir / "plain/cat-a/x.png", 1);
  image(dir / "plain/cat-a/deeper/y.png", 2);
  image(dir / "plain/cat-b/z.jpg", 3);
  text(dir / "plain/README.txt", "ignored");
  text(dir / "plain/cat-b/notes.txt", "ignored");
  auto rows = by_name(import_and_read("folder", dir / "plain", dir / "plain.csv", "xray"));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_THAT(rows["y.png"].labels, ElementsAre("cat-a"));
  EXPECT_THAT(rows["z.jpg"].labels, ElementsAre("cat-b"));
  EXPECT_EQ(rows["x.png"].split, "");
  image(dir / "split/train/cat-a/1.png", 1);
  image(dir / "split/val/cat-b/2.png", 2);
  image(dir / "split/test/cat-a/3.png", 3);
  rows = by_name(import_and_read("folder", dir / "split", dir / "split.csv", "ultrasound"));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows["1.png"].split, "train");
  EXPECT_EQ(rows["2.png"].split, "val");
  EXPECT_THAT(rows["3.png"].labels, ElementsAre("cat-a"));
  ImportOptions o{dir / "plain", dir / "x.csv", ""};
  EXPECT_THROW(import_dataset("folder", o), Error);  // the modality is required
}

TEST(DataImport, DicomTreeOneSamplePerSeries) {
  testing::TempDir dir("import");
  const auto root = dir / "pacs";
  std::vector<int16_t> hu(16 * 16 * 4);
  for (size_t i = 0; i < hu.size(); ++i) hu[i] = static_cast<int16_t>(-1000 + (i * 13) % 2000);
  testutil::write_ct_series(root / "p1/study/ct", hu, {16, 16, 4}, -1024,
                            "1.2.826.0.1.3680043.2.1125.9.1", "IM", "P1");
  testutil::write_ct_series(root / "p2/mixed", hu, {16, 16, 4}, -1024,
                            "1.2.826.0.1.3680043.2.1125.9.2", "A", "P2");
  testutil::write_ct_series(root / "p2/mixed", hu, {16, 16, 4}, -1024,
                            "1.2.826.0.1.3680043.2.1125.9.3", "B", "P2");
  std::vector<uint16_t> px(40 * 36);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint16_t>(i % 1000);
  stdfs::create_directories(root / "p3/xr");
  stdfs::create_directories(root / "p4");
  testutil::write_dicom(root / "p3/xr/pa.dcm", px, 40, 36, "DX", {{"0010|0020", "P3"}});
  testutil::write_dicom(root / "p3/xr/lat.dcm", px, 40, 36, "CR", {{"0010|0020", "P3"}});
  testutil::write_dicom(root / "p4/ot.dcm", px, 40, 36, "OT", {{"0010|0020", "P4"}});
  text(root / "p4/DICOMDIR.txt", "not DICOM");
  auto rows = import_and_read("dicom", root, dir / "dicom.csv");
  std::map<std::string, ManifestRow> by_path;
  for (const auto& r : rows) by_path[r.path.lexically_relative(root).generic_string()] = r;
  ASSERT_EQ(rows.size(), 5u);
  ASSERT_EQ(by_path.count("p1/study/ct"), 1u);
  EXPECT_EQ(by_path["p1/study/ct"].modality, "ct");
  EXPECT_EQ(by_path["p1/study/ct"].group, "dicom:P1");
  int mixed = 0;
  for (const auto& [p, r] : by_path) {
    if (p.rfind("p2/mixed#", 0) == 0) {
      ++mixed;
      EXPECT_EQ(r.group, "dicom:P2");
    }
  }
  EXPECT_EQ(mixed, 2);
  EXPECT_EQ(by_path["p3/xr/pa.dcm"].modality, "xray");
  EXPECT_EQ(by_path["p3/xr/lat.dcm"].modality, "xray");
  EXPECT_EQ(by_path.count("p4/ot.dcm"), 0u);  // Modality OT: skipped without --modality
  // With --modality other, the OT image is taken too.
  EXPECT_EQ(import_and_read("dicom", root, dir / "dicom2.csv", "other").size(), 6u);
}

// --labels: a CSV keyed by PatientID replaces the labels and sets the split; a patient
// missing from it is skipped into MANIFEST.skipped.csv.
TEST(DataImport, DicomLabelsJoinedByPatientId) {
  testing::TempDir dir("import");
  std::vector<uint16_t> px(40 * 36);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint16_t>(i % 1000);
  for (const char* p : {"P1", "P2", "P3"}) {
    stdfs::create_directories(dir / "pacs" / p);
    testutil::write_dicom(dir / "pacs" / p / "cxr.dcm", px, 40, 36, "DX", {{"0010|0020", p}});
  }
  text(dir / "labels.csv", "patient,finding,fold\nP1,nodule|effusion,train\nP2,,test\nP9,x,val\n");
  ImportOptions o{dir / "pacs", dir / "m.csv", ""};
  o.labels_csv = dir / "labels.csv";
  o.id_column = "patient";
  o.labels_column = "finding";
  o.split_column = "fold";
  const ImportResult r = import_dataset("dicom", o);
  auto rows = read_manifest(dir / "m.csv", true);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].group, "dicom:P1");
  EXPECT_THAT(rows[0].labels, ElementsAre("nodule", "effusion"));
  EXPECT_EQ(rows[0].split, "train");
  EXPECT_TRUE(rows[1].labels.empty());
  EXPECT_EQ(rows[1].split, "test");
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_THAT(r.skipped[0], HasSubstr((dir / "pacs/P3/cxr.dcm").string() + ": id 'P3' not in"));
  EXPECT_THAT(fs::read_file(dir / "m.skipped.csv"), HasSubstr("id 'P3' not in"));
  // Without --split-column the importer's (empty) split stays.
  o.split_column.clear();
  import_dataset("dicom", o);
  EXPECT_EQ(read_manifest(dir / "m.csv")[0].split, "");
}

TEST(DataImport, FolderLabelsJoinedByFileNameOrPath) {
  testing::TempDir dir("import");
  image(dir / "plain/cat-a/x.png", 1);
  image(dir / "plain/cat-a/deeper/y.png", 2);
  image(dir / "plain/cat-b/z.jpg", 3);
  text(dir / "dx.csv", "file,dx\nx,A\ncat-b/z.jpg,B|C\n");
  ImportOptions o{dir / "plain", dir / "m.csv", "xray"};
  o.labels_csv = dir / "dx.csv";
  o.id_column = "file";
  o.labels_column = "dx";
  const ImportResult r = import_dataset("folder", o);
  auto rows = by_name(read_manifest(dir / "m.csv", true));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_THAT(rows["x.png"].labels, ElementsAre("A"));
  EXPECT_THAT(rows["z.jpg"].labels, ElementsAre("B", "C"));
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_THAT(r.skipped[0], HasSubstr("y.png: id 'cat-a/deeper/y.png' not in"));
}

TEST(DataImport, LabelsCsvErrorsNameFileAndColumn) {
  testing::TempDir dir("import");
  image(dir / "plain/cat-a/x.png", 1);
  const auto expect_error = [&](const std::string& csv, const std::string& split_column,
                                const std::string& message) {
    text(dir / "l.csv", csv);
    ImportOptions o{dir / "plain", dir / "m.csv", "xray"};
    o.labels_csv = dir / "l.csv";
    o.split_column = split_column;
    try {
      import_dataset("folder", o);
      ADD_FAILURE() << "no error for " << csv;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(message));
    }
    EXPECT_FALSE(stdfs::exists(dir / "m.csv"));
  };
  expect_error("name,diagnosis\nx,A\n", "",
               (dir / "l.csv").string() +
                   ": no column 'id' (--id-column); columns present: name, diagnosis");
  expect_error("id,labels\nx,A\n", "fold",
               "no column 'fold' (--split-column); columns present: id, labels");
  expect_error("id,labels\nx,A\nx,B\n", "", "l.csv:3: id 'x' listed twice (also on line 2)");
  expect_error("id,labels,s\nx,A,training\n", "s", "l.csv:2: unknown split 'training'");
  expect_error("id,labels\nx\n", "", "l.csv:2: expected 2 fields, got 1");
  expect_error("", "", "empty labels CSV");
  ImportOptions o{dir / "plain", dir / "m.csv", "xray"};
  o.labels_csv = dir / "missing.csv";
  EXPECT_THROW(import_dataset("folder", o), Error);
}

// Symbolic link loops, a link to itself and a FIFO in the tree: the import
// finishes, takes every real file once and lists what it skipped with the
// reason; nothing blocks (a FIFO is never opened). The dicom importer walks
// the same way, and a series folder holding a FIFO is refused, not read.
TEST(DataImport, SymlinkLoopsAndFifosAreSkippedWithTheirReason) {
  testing::TempDir dir("import");
  const auto root = dir / "tree";
  image(root / "cat-a/x.png", 1);
  image(root / "cat-b/y.png", 2);
  stdfs::create_directory_symlink("..", root / "cat-a/up");  // a loop back to the root
  stdfs::create_symlink(root / "cat-b/self.png", root / "cat-b/self.png");  // a link to itself
  ASSERT_EQ(mkfifo((root / "cat-b/pipe.png").c_str(), 0600), 0);
  ImportOptions o{root, dir / "m.csv", "xray"};
  const ImportResult r = import_dataset("folder", o);
  ASSERT_EQ(r.rows.size(), 2u);
  EXPECT_EQ(r.rows[0].path, root / "cat-a/x.png");
  EXPECT_EQ(r.rows[1].path, root / "cat-b/y.png");
  const std::string skipped = fmt::format("{}", fmt::join(r.skipped, "\n"));
  EXPECT_THAT(skipped, HasSubstr((root / "cat-a/up").string() + ": folder already visited as"));
  EXPECT_THAT(skipped, HasSubstr((root / "cat-b/self.png").string() + ": cannot stat:"));
  EXPECT_THAT(skipped,
              HasSubstr((root / "cat-b/pipe.png").string() + ": not a regular file (a FIFO)"));

  std::vector<uint16_t> px(40 * 36);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint16_t>(i % 1000);
  stdfs::create_directories(dir / "pacs/p1");
  stdfs::create_directories(dir / "pacs/p2");
  testutil::write_dicom(dir / "pacs/p1/a.dcm", px, 40, 36, "DX", {{"0010|0020", "P1"}});
  testutil::write_dicom(dir / "pacs/p2/b.dcm", px, 40, 36, "DX", {{"0010|0020", "P2"}});
  ASSERT_EQ(mkfifo((dir / "pacs/p2/pipe").c_str(), 0600), 0);
  stdfs::create_directory_symlink("..", dir / "pacs/p1/loop");
  const ImportResult d = import_dataset("dicom", ImportOptions{dir / "pacs", dir / "d.csv", ""});
  ASSERT_EQ(d.rows.size(), 1u);
  EXPECT_EQ(d.rows[0].path, dir / "pacs/p1/a.dcm");
  const std::string dskipped = fmt::format("{}", fmt::join(d.skipped, "\n"));
  EXPECT_THAT(dskipped,
              HasSubstr((dir / "pacs/p2").string() + ": pipe: not a regular file (a FIFO)"));
  EXPECT_THAT(dskipped, HasSubstr((dir / "pacs/p1/loop").string() + ": folder already visited as"));
}

// MedMNIST archives written by numpy itself; pixel values follow a formula
// that the test recomputes: image n, element j -> (31 n + 7 j) % 251.
TEST(DataImport, MedMnistNpzFromNumpy) {
  const std::string py = testing::python_with("numpy");
  if (py.empty()) GTEST_SKIP() << "needs Python with numpy (setup.sh installs python3-numpy)";
  testing::TempDir dir("import");
  const auto root = dir / "medmnist";
  stdfs::create_directories(root);
  const std::string script = R"(
import numpy as np, sys
root = sys.argv[1]
def imgs(shape):
    n = shape[0]; per = int(np.prod(shape[1:]))
    a = (31 * np.arange(n)[:, None] + 7 * np.arange(per)[None, :]) % 251
    return a.astype(np.uint8).reshape(shape)
np.savez_compressed(root + '/breastmnist.npz',
    train_images=imgs((3, 28, 28)), train_labels=np.array([[0], [1], [1]], dtype=np.uint8),
    val_images=imgs((1, 28, 28)), val_labels=np.array([[1]], dtype=np.uint8),
    test_images=imgs((2, 28, 28)), test_labels=np.array([[0], [1]], dtype=np.uint8))
cl = np.zeros((2, 14), dtype=np.uint8); cl[0, 1] = 1; cl[0, 10] = 1
np.savez(root + '/chestmnist_64.npz', train_images=imgs((2, 64, 64)), train_labels=cl)
np.savez_compressed(root + '/organmnist3d.npz', train_images=imgs((2, 28, 28, 28)),
    train_labels=np.array([[3], [7]], dtype=np.int64))
np.savez_compressed(root + '/pathmnist.npz', test_images=imgs((2, 28, 28, 3)),
    test_labels=np.array([[5], [8]], dtype=np.int64))
np.savez_compressed(root + '/synapsemnist3d.npz', train_images=imgs((1, 28, 28, 28)),
    train_labels=np.array([[1]], dtype=np.int64))
)";
  text(dir / "make.py", script);
  ASSERT_EQ(testing::run_command(py + " " + (dir / "make.py").string() + " " + root.string()), 0);
  std::ofstream(root / "broken.npz") << "PK not really a zip";

  PreprocessConfig cfg = small_cfg();
  cfg.image_size = 28;  // 2D read back at their own size: values compare exactly
  cfg.volume_size = 28;
  cfg.volume_slices = 28;
  cfg.ct_spacing = {1.0, 1.0, 1.0};
  const auto out = dir / "out/manifest.csv";
  ImportOptions o{root, out, ""};
  const ImportResult r = import_dataset("medmnist", o);
  auto rows = read_manifest(out, true);
  ASSERT_EQ(rows.size(), 3u + 1 + 2 + 2 + 2 + 2);  // breast 6, chest 2, organ3d 2, path 2
  std::map<std::string, ManifestRow> by_rel;
  for (const auto& row : rows)
    by_rel[row.path.lexically_relative(out.parent_path()).generic_string()] = row;
  const auto& b1 = by_rel.at("medmnist/breastmnist/train/000001.png");
  EXPECT_EQ(b1.modality, "ultrasound");
  EXPECT_EQ(b1.split, "train");
  EXPECT_THAT(b1.labels, ElementsAre("breastmnist:1"));
  EXPECT_EQ(by_rel.at("medmnist/breastmnist/val/000000.png").split, "val");
  EXPECT_THAT(by_rel.at("medmnist/chestmnist_64/train/000000.png").labels,
              ElementsAre("chestmnist:1", "chestmnist:10"));
  EXPECT_THAT(by_rel.at("medmnist/chestmnist_64/train/000001.png").labels,
              ElementsAre("chestmnist:none"));
  EXPECT_EQ(by_rel.at("medmnist/chestmnist_64/train/000001.png").modality, "xray");
  const auto& organ = by_rel.at("medmnist/organmnist3d/train/000001.nii.gz");
  EXPECT_EQ(organ.modality, "ct");
  EXPECT_THAT(organ.labels, ElementsAre("organmnist3d:7"));
  EXPECT_EQ(by_rel.at("medmnist/pathmnist/test/000001.png").modality, "other");
  // synapsemnist3d (no default modality) and the broken archive are skipped with reasons.
  ASSERT_EQ(r.skipped.size(), 2u);
  EXPECT_THAT(r.skipped[0], HasSubstr("broken.npz"));
  EXPECT_THAT(r.skipped[1], HasSubstr("no default modality for the 3D subset 'synapsemnist3d'"));

  // Pixels: the 2D PNG and the 3D CT volume read back as the original bytes.
  Sample s2 = read_sample(b1, out.parent_path(), cfg);
  ASSERT_EQ(s2.numel(), 28 * 28);
  for (int64_t j = 0; j < 28 * 28; ++j) ASSERT_EQ(s2.pixels[j], (31 * 1 + 7 * j) % 251) << j;
  Sample s3 = read_sample(organ, out.parent_path(), cfg);
  ASSERT_EQ(s3.numel(), 28 * 28 * 28);
  int64_t mismatches = 0;
  for (int64_t j = 0; j < 28 * 28 * 28; ++j) mismatches += s3.pixels[j] != (31 * 1 + 7 * j) % 251;
  EXPECT_EQ(mismatches, 0);
}

// Hostile or degenerate MedMNIST headers: an empty split is zero samples with
// a reason, a shape whose size overflows is refused naming file and array
// (written with Python's zipfile: the bytes are the test's own).
TEST(DataImport, MedMnistEmptySplitAndOverflowingShape) {
  const std::string py = testing::python_with("zipfile");
  if (py.empty()) GTEST_SKIP() << "needs python3";
  testing::TempDir dir("import");
  const auto root = dir / "medmnist";
  stdfs::create_directories(root);
  const std::string script = R"(
import sys, zipfile
root = sys.argv[1]
def npy(shape, payload):
    h = "{'descr': '|u1', 'fortran_order': False, 'shape': %s, }" % (shape,)
    h += ' ' * (63 - (len(h) + 10) % 64) + '\n'
    return b'\x93NUMPY\x01\x00' + len(h).to_bytes(2, 'little') + h.encode() + payload
with zipfile.ZipFile(root + '/breastmnist.npz', 'w') as z:
    z.writestr('train_images.npy', npy((0, 28, 28), b''))
    z.writestr('train_labels.npy', npy((0, 1), b''))
    z.writestr('val_images.npy', npy((1, 28, 28), bytes(range(28)) * 28))
    z.writestr('val_labels.npy', npy((1, 1), b'\x01'))
with zipfile.ZipFile(root + '/pneumoniamnist.npz', 'w') as z:
    z.writestr('train_images.npy', npy((2**32, 2**32, 1), bytes(64)))
    z.writestr('train_labels.npy', npy((1, 1), b'\x01'))
with zipfile.ZipFile(root + '/chestmnist.npz', 'w') as z:
    z.writestr('train_images.npy', npy((2**40, 28, 28), bytes(64)))
    z.writestr('train_labels.npy', npy((1, 1), b'\x01'))
)";
  text(dir / "make.py", script);
  ASSERT_EQ(testing::run_command(py + " " + (dir / "make.py").string() + " " + root.string()), 0);
  const auto out = dir / "out/manifest.csv";
  const ImportResult r = import_dataset("medmnist", ImportOptions{root, out, ""});
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.rows[0].split, "val");
  ASSERT_EQ(r.skipped.size(), 3u);
  EXPECT_THAT(r.skipped[0],
              HasSubstr("breastmnist.npz:train_images.npy: empty split 'train' (0 images)"));
  EXPECT_THAT(r.skipped[1], HasSubstr("chestmnist.npz:train_images.npy: payload is"));
  EXPECT_THAT(r.skipped[2],
              HasSubstr("pneumoniamnist.npz:train_images.npy: 'shape' (4294967296, 4294967296, 1) "
                        "overflows the addressable size"));
}

// Checks a row's labels, group and split.
void expect_row(const ManifestRow& row, const std::vector<std::string>& labels,
                const std::string& group, const std::string& split) {
  EXPECT_EQ(row.labels, labels) << row.path;
  EXPECT_EQ(row.group, group) << row.path;
  EXPECT_EQ(row.split, split) << row.path;
}

// CheXpert's real header: Path, Sex, Age, Frontal/Lateral, AP/PA, then the 14 observations.
const char* const kChexpertHeader =
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung "
    "Opacity,"
    "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural "
    "Other,"
    "Fracture,Support Devices\n";

// A CheXpert-small replica: train.csv (uncertain and blank cells, a lateral view, an image
// not downloaded) and valid.csv (0.0/1.0 only), images written where Path says.
stdfs::path chexpert_replica(const stdfs::path& base) {
  const stdfs::path dir = base / "CheXpert-v1.0-small";
  text(dir / "train.csv", std::string(kChexpertHeader) +
                              "CheXpert-v1.0-small/train/patient00001/study1/"
                              "view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0\n"
                              "CheXpert-v1.0-small/train/patient00002/study2/"
                              "view1_frontal.jpg,Female,87,Frontal,AP,,,-1.0,1.0,,-1.0,"
                              "-1.0,,-1.0,,-1.0,,1.0,\n"
                              "CheXpert-v1.0-small/train/patient00002/study1/"
                              "view1_frontal.jpg,Female,83,Frontal,AP,,,,1.0,,,-1.0,,,,,,"
                              "1.0,\n"
                              "CheXpert-v1.0-small/train/patient00002/study1/"
                              "view2_lateral.jpg,Female,83,Lateral,,,,,1.0,,,-1.0,,,,,,"
                              "1.0,\n"
                              "CheXpert-v1.0-small/train/patient00003/study1/"
                              "view1_frontal.jpg,Male,41,Frontal,AP,,,,,,1.0,,,,0.0,,,,\n");
  text(dir / "valid.csv", std::string(kChexpertHeader) +
                              "CheXpert-v1.0-small/valid/patient64541/study1/"
                              "view1_frontal.jpg,Male,73,Frontal,AP,0.0,1.0,1.0,1.0,0.0,"
                              "0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n"
                              "CheXpert-v1.0-small/valid/patient64542/study1/"
                              "view1_frontal.jpg,Male,70,Frontal,PA,0.0,0.0,0.0,0.0,0.0,"
                              "0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0\n");
  int seed = 0;
  for (const char* p : {"train/patient00001/study1/view1_frontal.jpg",
                        "train/patient00002/study2/view1_frontal.jpg",
                        "train/patient00002/study1/view1_frontal.jpg",
                        "train/patient00002/study1/view2_lateral.jpg",
                        "valid/patient64541/study1/view1_frontal.jpg",
                        "valid/patient64542/study1/view1_frontal.jpg"}) {
    image(dir / p, ++seed);
  }
  return dir;
}

// The rows of `rows` keyed by their path relative to `dir` ("train/patient00001/...").
std::map<std::string, ManifestRow> by_rel(const std::vector<ManifestRow>& rows,
                                          const stdfs::path& dir) {
  std::map<std::string, ManifestRow> m;
  for (const auto& r : rows)
    m[r.path.lexically_relative(stdfs::absolute(dir)).generic_string()] = r;
  return m;
}

std::string import_error(const std::string& name, const ImportOptions& o) {
  try {
    import_dataset(name, o);
  } catch (const Error& e) {
    EXPECT_FALSE(stdfs::exists(o.out)) << "a failed import wrote " << o.out;
    return e.what();
  }
  ADD_FAILURE() << "import " << name << " of " << o.root << " succeeded";
  return "";
}

TEST(DataImport, CheXpertLabelsPatientsSplitsAndSkips) {
  testing::TempDir dir("import");
  const stdfs::path cx = chexpert_replica(dir / "dl");
  auto rows = by_rel(import_and_read("chexpert", dir / "dl", dir / "cx.csv"), cx);
  ASSERT_EQ(rows.size(), 6u);
  const auto& p1 = rows["train/patient00001/study1/view1_frontal.jpg"];
  EXPECT_THAT(p1.labels, ElementsAre("No Finding", "Support Devices"));
  EXPECT_EQ(p1.group, "chexpert:patient00001");
  EXPECT_EQ(p1.split, "train");
  EXPECT_EQ(p1.modality, "xray");
  // Uncertain (-1.0) observations are no label by default.
  const auto& p2 = rows["train/patient00002/study2/view1_frontal.jpg"];
  EXPECT_THAT(p2.labels, ElementsAre("Lung Opacity", "Fracture"));
  EXPECT_EQ(p2.group, "chexpert:patient00002");
  EXPECT_EQ(rows["train/patient00002/study1/view2_lateral.jpg"].group, "chexpert:patient00002");
  // valid.csv is the test split.
  const auto& v = rows["valid/patient64541/study1/view1_frontal.jpg"];
  EXPECT_THAT(v.labels, ElementsAre("Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity"));
  EXPECT_EQ(v.split, "test");
  EXPECT_EQ(v.group, "chexpert:patient64541");
  EXPECT_THAT(rows["valid/patient64542/study1/view1_frontal.jpg"].labels,
              ElementsAre("Support Devices"));
  // The image that is not downloaded is skipped with its line.
  const std::string skipped = fs::read_file(dir / "cx.skipped.csv");
  EXPECT_THAT(skipped, HasSubstr("CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg,"
                                 "listed in train.csv line 6 but not found under"));

  // uncertain=positive makes them labels; views=frontal leaves the lateral view out, with its reason.
  ImportOptions o{dir / "dl", dir / "cx2.csv", ""};
  o.options = {{"uncertain", "positive"}, {"views", "frontal"}};
  const ImportResult r = import_dataset("chexpert", o);
  auto rows2 = by_rel(r.rows, cx);
  ASSERT_EQ(rows2.size(), 5u);
  EXPECT_THAT(rows2["train/patient00002/study2/view1_frontal.jpg"].labels,
              ElementsAre("Cardiomegaly", "Lung Opacity", "Edema", "Consolidation", "Atelectasis",
                          "Pleural Effusion", "Fracture"));
  EXPECT_EQ(rows2.count("train/patient00002/study1/view2_lateral.jpg"), 0u);
  EXPECT_THAT(
      fs::read_file(dir / "cx2.skipped.csv"),
      HasSubstr("view2_lateral.jpg,listed in train.csv line 5 is a Lateral view (views=frontal)"));
}

TEST(DataImport, CheXpertBadInputNamesFileLineAndOption) {
  testing::TempDir dir("import");
  const stdfs::path cx = chexpert_replica(dir / "dl");
  ImportOptions o{dir / "dl", dir / "cx.csv", ""};
  o.options = {{"uncertain", "maybe"}};
  EXPECT_THAT(import_error("chexpert", o),
              HasSubstr("option uncertain=maybe: expected one of negative, positive"));
  o.options = {{"frontal", "1"}};
  EXPECT_THAT(import_error("chexpert", o),
              HasSubstr("unknown option 'frontal' (options of chexpert: uncertain, views)"));
  o.options.clear();
  // A label value out of the set, then a row with too few fields: FILE:LINE and the column.
  const std::string good = fs::read_file(cx / "train.csv");
  text(cx / "train.csv",
       std::string(kChexpertHeader) +
           "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,"
           ",,,,,2.0,,,,,,,,\n");
  EXPECT_THAT(import_error("chexpert", o),
              HasSubstr((cx / "train.csv").string() +
                        ":2: column 'Edema': value '2.0' is not 1.0, 0.0, -1.0 or empty"));
  text(cx / "train.csv",
       good + "CheXpert-v1.0-small/train/patient00009/study1/view1_frontal.jpg,Male,1\n");
  EXPECT_THAT(import_error("chexpert", o),
              HasSubstr((cx / "train.csv").string() + ":7: expected 19 fields, got 3"));
  // A header without an observation column lists the columns present.
  text(cx / "train.csv", "Path,Sex,Age,Frontal/Lateral,AP/PA\n");
  EXPECT_THAT(import_error("chexpert", o),
              HasSubstr("train.csv:1: no column 'No Finding' (columns present: Path, Sex"));
  // A broken layout names the missing file.
  text(cx / "train.csv", good);
  stdfs::remove(cx / "valid.csv");
  EXPECT_THAT(import_error("chexpert", o),
              HasSubstr("import chexpert: valid.csv not found: " + (cx / "valid.csv").string()));
  stdfs::remove(cx / "train.csv");
  EXPECT_THAT(import_error("chexpert", o),
              HasSubstr("import chexpert: train.csv not found in " + (dir / "dl").string()));
}

// Writes `content` to `p` gzip-compressed (by the gzip tool, as PhysioNet ships them).
void gz_text(const stdfs::path& p, const std::string& content) {
  const stdfs::path plain = p.parent_path() / p.stem();  // x.csv.gz -> x.csv
  text(plain, content);
  ASSERT_EQ(testing::run_command("gzip -n -f '" + plain.string() + "'"), 0);
  ASSERT_TRUE(stdfs::exists(p));
}

// A MIMIC-CXR-JPG replica: two patients, four studies, the three tables (real headers).
void mimic_replica(const stdfs::path& root) {
  const std::string a = "02aa804e-bde0afdd-112c0b34-7bc16630-4e381014",
                    b = "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962",
                    c = "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab",
                    d = "68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714",
                    e = "fffabebf-74fd3a1f-673b6b41-96ec0ac9-2ab69818",
                    gone = "0c4eb1e1-b801903c-bcebe8a4-3da9cd3c-3b94a27c";
  gz_text(root / "mimic-cxr-2.0.0-split.csv.gz",
          "dicom_id,study_id,subject_id,split\n" + a + ",50414267,10000032,train\n" + b +
              ",50414267,10000032,train\n" + c + ",53189527,10000032,train\n" + d +
              ",51029426,11000011,validate\n" + e + ",55368167,19999987,test\n" + gone +
              ",55368167,19999987,test\n" +
              "9e0ba7c1-aaaaaaaa-bbbbbbbb-cccccccc-dddddddd,59999999,19999987,test\n");
  gz_text(root / "mimic-cxr-2.0.0-chexpert.csv.gz",
          "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged "
          "Cardiomediastinum,Fracture,"
          "Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural "
          "Other,Pneumonia,Pneumothorax,Support Devices\n"
          "10000032,50414267,,,,,,,,,1.0,,,,,\n"
          "10000032,53189527,,,,,,,,,1.0,,,,,\n"
          "11000011,51029426,1.0,-1.0,,0.0,,,,,,1.0,,,,\n"
          "19999987,55368167,,,,,,,,-1.0,,,,1.0,0.0,1.0\n");
  gz_text(root / "mimic-cxr-2.0.0-metadata.csv.gz",
          "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,"
          "Columns,StudyDate,"
          "StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
          "PatientOrientationCodeSequence_CodeMeaning\n" +
              a +
              ",10000032,50414267,CHEST (PA AND LAT),PA,3056,2544,21800506,213014.531,CHEST (PA "
              "AND LAT),"
              "postero-anterior,Erect\n" +
              b +
              ",10000032,50414267,CHEST (PA AND LAT),LATERAL,3056,2544,21800506,213014.531,CHEST "
              "(PA AND LAT),"
              "lateral,Erect\n" +
              c +
              ",10000032,53189527,CHEST (PA AND LAT),PA,3056,2544,21800626,165500.312,CHEST (PA "
              "AND LAT),"
              "postero-anterior,Erect\n" +
              d +
              ",11000011,51029426,CHEST (PORTABLE AP),AP,2705,2539,21840101,100000.000,CHEST "
              "(PORTABLE AP),"
              "antero-posterior,Erect\n");  // e is not in the metadata
  int seed = 0;
  for (const auto& [subject, study, dicom] :
       std::vector<std::array<std::string, 3>>{{"10000032", "50414267", a},
                                               {"10000032", "50414267", b},
                                               {"10000032", "53189527", c},
                                               {"11000011", "51029426", d},
                                               {"19999987", "55368167", e}}) {
    image(root / "files" / ("p" + subject.substr(0, 2)) / ("p" + subject) / ("s" + study) /
              (dicom + ".jpg"),
          ++seed);
  }
}

TEST(DataImport, MimicCxrJpgLabelsPatientsSplitsAndSkips) {
  testing::TempDir dir("import");
  const stdfs::path root = dir / "mimic-cxr-jpg/2.0.0";
  mimic_replica(root);
  auto rows = by_rel(import_and_read("mimic-cxr", root, dir / "m.csv"), root / "files");
  ASSERT_EQ(rows.size(), 5u);
  const auto& a = rows["p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e381014.jpg"];
  EXPECT_THAT(a.labels, ElementsAre("No Finding"));
  EXPECT_EQ(a.group, "mimic-cxr:10000032");
  EXPECT_EQ(a.split, "train");
  EXPECT_EQ(a.modality, "xray");
  const auto& d = rows["p11/p11000011/s51029426/68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714.jpg"];
  EXPECT_THAT(d.labels,
              ElementsAre("Atelectasis", "Pleural Effusion"));  // -1.0 Cardiomegaly: no label
  EXPECT_EQ(d.split, "val");
  EXPECT_EQ(d.group, "mimic-cxr:11000011");
  const auto& e = rows["p19/p19999987/s55368167/fffabebf-74fd3a1f-673b6b41-96ec0ac9-2ab69818.jpg"];
  EXPECT_THAT(e.labels, ElementsAre("Pneumonia", "Support Devices"));
  EXPECT_EQ(e.split, "test");
  const std::string skipped = fs::read_file(dir / "m.skipped.csv");
  EXPECT_THAT(
      skipped,
      HasSubstr("0c4eb1e1-b801903c-bcebe8a4-3da9cd3c-3b94a27c.jpg,"
                "listed in mimic-cxr-2.0.0-split.csv.gz line 7 but not found under the root"));
  EXPECT_THAT(
      skipped,
      HasSubstr(
          "9e0ba7c1-aaaaaaaa-bbbbbbbb-cccccccc-dddddddd.jpg,listed in "
          "mimic-cxr-2.0.0-split.csv.gz line 8; study not in mimic-cxr-2.0.0-chexpert.csv.gz"));

  // views=frontal reads the metadata: the LATERAL image and the one it lacks are skipped.
  ImportOptions o{root, dir / "f.csv", ""};
  o.options = {{"views", "frontal"}, {"uncertain", "positive"}};
  auto frontal = by_rel(import_dataset("mimic-cxr", o).rows, root / "files");
  ASSERT_EQ(frontal.size(), 3u);
  EXPECT_THAT(
      frontal["p11/p11000011/s51029426/68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714.jpg"].labels,
      ElementsAre("Cardiomegaly", "Atelectasis", "Pleural Effusion"));
  const std::string fskipped = fs::read_file(dir / "f.skipped.csv");
  EXPECT_THAT(fskipped, HasSubstr("line 3; view 'LATERAL' is not frontal (views=frontal)"));
  EXPECT_THAT(fskipped,
              HasSubstr("line 6; not in mimic-cxr-2.0.0-metadata.csv.gz (views=frontal)"));
}

TEST(DataImport, MimicCxrJpgBrokenLayoutAndBadRows) {
  testing::TempDir dir("import");
  const stdfs::path root = dir / "mimic";
  mimic_replica(root);
  ImportOptions o{root, dir / "m.csv", ""};
  // A damaged gzip stream (cut short) names the file.
  const std::string whole = fs::read_file(root / "mimic-cxr-2.0.0-chexpert.csv.gz");
  text(root / "mimic-cxr-2.0.0-chexpert.csv.gz", whole.substr(0, whole.size() - 12));
  EXPECT_THAT(import_error("mimic-cxr", o),
              HasSubstr((root / "mimic-cxr-2.0.0-chexpert.csv.gz").string() +
                        ": cannot read (damaged gzip stream?)"));
  // Missing: the labels table, then the metadata only when views=frontal needs it.
  stdfs::remove(root / "mimic-cxr-2.0.0-chexpert.csv.gz");
  EXPECT_THAT(
      import_error("mimic-cxr", o),
      HasSubstr("import mimic-cxr: mimic-cxr-2.0.0-chexpert.csv.gz not found in " + root.string()));
  // A decompressed table serves as well.
  text(root / "mimic-cxr-2.0.0-chexpert.csv",
       "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged "
       "Cardiomediastinum,Fracture,"
       "Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural "
       "Other,Pneumonia,Pneumothorax,Support Devices\n"
       "10000032,50414267,,,,,,,,,1.0,,,,,\n");
  EXPECT_EQ(import_dataset("mimic-cxr", ImportOptions{root, dir / "plain.csv", ""}).rows.size(),
            2u);
  stdfs::remove(root / "mimic-cxr-2.0.0-metadata.csv.gz");
  o.options = {{"views", "frontal"}};
  EXPECT_THAT(import_error("mimic-cxr", o),
              HasSubstr("mimic-cxr-2.0.0-metadata.csv.gz not found in"));
  o.options.clear();
  // A split other than train/validate/test, and a label value out of the set: FILE:LINE.
  gz_text(root / "mimic-cxr-2.0.0-split.csv.gz",
          "dicom_id,study_id,subject_id,split\nx,50414267,10000032,dev\n");
  EXPECT_THAT(
      import_error("mimic-cxr", o),
      HasSubstr("mimic-cxr-2.0.0-split.csv.gz:2: split 'dev' is not train, validate or test"));
  text(root / "mimic-cxr-2.0.0-chexpert.csv",
       "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged "
       "Cardiomediastinum,Fracture,"
       "Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural "
       "Other,Pneumonia,Pneumothorax,Support Devices\n"
       "10000032,50414267,,,,,,,,,yes,,,,,\n");
  EXPECT_THAT(
      import_error("mimic-cxr", o),
      HasSubstr("mimic-cxr-2.0.0-chexpert.csv:2: column 'No Finding': value 'yes' is not 1.0"));
  stdfs::remove_all(root / "files");
  EXPECT_THAT(import_error("mimic-cxr", o),
              HasSubstr("import mimic-cxr: the image folder files/ not found: "));
}

// TotalSegmentator's meta.csv: ';'-separated, a UTF-8 byte order mark, the v2 columns.
const char* const kTotalSegHeader =
    "\xEF\xBB\xBFimage_id;age;gender;institute;study_type;split;manufacturer;scanner_model;kvp;"
    "pathology;"
    "pathology_location\n";

void ct_volume(const stdfs::path& p, int seed) {
  stdfs::create_directories(p.parent_path());
  std::vector<int16_t> hu(8 * 8 * 6);
  for (size_t i = 0; i < hu.size(); ++i)
    hu[i] = static_cast<int16_t>(static_cast<int>((i * 37 + seed * 11) % 1600) - 800);
  testutil::write_volume<int16_t>(p, hu, {8, 8, 6}, {1.5, 1.5, 1.5});
}

void totalseg_replica(const stdfs::path& root) {
  text(root / "meta.csv",
       std::string(kTotalSegHeader) +
           "s0000;71;m;A;ct thorax-abdomen-pelvis;train;Siemens;SOMATOM Definition AS+;120;"
           "no_pathology;\n"
           "s0001;58;f;B;ct abdomen-pelvis;val;Philips;iCT 256;100;tumor;liver\n"
           "s0002;44;f;A;ct thorax;test;Siemens;SOMATOM Force;90;;\n"
           "s0003;80;m;C;ct neck;train;GE;Revolution;120;fracture;spine\n");
  for (const char* s : {"s0000", "s0001", "s0002", "s0099"})
    ct_volume(root / s / "ct.nii.gz", s[4]);
  ct_volume(root / "s0000/segmentations/liver.nii.gz", 7);  // masks are not samples
}

TEST(DataImport, TotalSegmentatorMetaCsv) {
  testing::TempDir dir("import");
  const stdfs::path root = dir / "Totalsegmentator_dataset_v201";
  totalseg_replica(root);
  auto rows = by_rel(import_and_read("totalsegmentator", root, dir / "ts.csv"), root);
  ASSERT_EQ(rows.size(), 3u);
  expect_row(rows["s0000/ct.nii.gz"], {"no_pathology"}, "totalsegmentator:s0000", "train");
  EXPECT_EQ(rows["s0000/ct.nii.gz"].modality, "ct");
  expect_row(rows["s0001/ct.nii.gz"], {"tumor"}, "totalsegmentator:s0001", "val");
  expect_row(rows["s0002/ct.nii.gz"], {}, "totalsegmentator:s0002", "test");
  const std::string skipped = fs::read_file(dir / "ts.skipped.csv");
  EXPECT_THAT(skipped, HasSubstr("s0003/ct.nii.gz,listed in meta.csv line 5 but not found"));
  EXPECT_THAT(skipped, HasSubstr("s0099/ct.nii.gz,not listed in meta.csv"));
  // labels=study_type labels by the examined region instead.
  ImportOptions o{root, dir / "st.csv", ""};
  o.options = {{"labels", "study_type"}};
  auto st = by_rel(import_dataset("totalsegmentator", o).rows, root);
  EXPECT_THAT(st["s0001/ct.nii.gz"].labels, ElementsAre("ct abdomen-pelvis"));
}

TEST(DataImport, TotalSegmentatorBadInput) {
  testing::TempDir dir("import");
  const stdfs::path root = dir / "ts";
  totalseg_replica(root);
  ImportOptions o{root, dir / "ts.csv", ""};
  const std::string good = fs::read_file(root / "meta.csv");
  text(root / "meta.csv", good + "s0004;50;m;A;ct thorax;validation;GE;Revolution;120;;\n");
  EXPECT_THAT(
      import_error("totalsegmentator", o),
      HasSubstr((root / "meta.csv").string() + ":6: split 'validation' is not train, val or test"));
  text(root / "meta.csv", good + "s0004;50;m\n");
  EXPECT_THAT(import_error("totalsegmentator", o),
              HasSubstr("meta.csv:6: expected 11 fields, got 3"));
  // The v1 meta.csv has no pathology column: the error lists the columns present.
  text(root / "meta.csv",
       "image_id;age;gender;institute;study_type;split\ns0000;71;m;A;ct thorax;train\n");
  EXPECT_THAT(
      import_error("totalsegmentator", o),
      HasSubstr(
          "meta.csv:1: no column 'pathology' (columns present: image_id, age, gender, institute, "
          "study_type, split)"));
  ImportOptions v1{root, dir / "v1.csv", ""};
  v1.options = {{"labels", "study_type"}};
  EXPECT_EQ(import_dataset("totalsegmentator", v1).rows.size(), 1u);
  stdfs::remove(root / "meta.csv");
  EXPECT_THAT(
      import_error("totalsegmentator", o),
      HasSubstr("import totalsegmentator: meta.csv not found: " + (root / "meta.csv").string()));
}

TEST(DataImport, KvasirCapsuleFramesAndVideosGroupedByVideo) {
  testing::TempDir dir("import");
  const auto root = dir / "kvasir-capsule";
  image(root / "labelled_images/Erosion/bca26705313a4644_20404.jpg", 1);
  image(root / "labelled_images/Pylorus/bca26705313a4644_854.jpg", 2);
  image(root / "labelled_images/Angiectasia/ad91cf7ca91440aa_873.jpg", 3);
  image(root / "labelled_images/Angiectasia/ad91cf7ca91440aa_872.jpg", 4);
  image(root / "labelled_images/stray.jpg", 5);
  text(root / "official_splits/split_0.csv",
       "filename,label\nbca26705313a4644_20404.jpg,Erosion\nbca26705313a4644_854.jpg,Pylorus\n");
  text(root / "official_splits/split_1.csv",
       "filename,label\nad91cf7ca91440aa_873.jpg,Angiectasia\nad91cf7ca91440aa_872.jpg,"
       "Angiectasia\n");
  clip(root / "labelled_videos/bca26705313a4644.mp4");
  clip(root / "labelled_videos/ad91cf7ca91440aa.mp4");
  clip(root / "labelled_videos/0a1b2c3d4e5f6a7b.mp4");  // no labelled frame
  clip(root / "unlabelled_videos/3c8d5f0b90d7475a.mp4");
  auto rows = by_name(import_and_read("kvasir-capsule", root, dir / "kc.csv"));
  ASSERT_EQ(rows.size(), 7u);
  const std::string a = "kvasir-capsule:bca26705313a4644", b = "kvasir-capsule:ad91cf7ca91440aa";
  expect_row(rows["bca26705313a4644_20404.jpg"], {"Erosion"}, a, "train");
  expect_row(rows["ad91cf7ca91440aa_873.jpg"], {"Angiectasia"}, b, "test");
  // A labelled video: the classes of its frames, its group and (one fold) its split.
  expect_row(rows["bca26705313a4644.mp4"], {"Erosion", "Pylorus"}, a, "train");
  expect_row(rows["ad91cf7ca91440aa.mp4"], {"Angiectasia"}, b, "test");
  // An unlabelled video: no labels, train.
  expect_row(rows["3c8d5f0b90d7475a.mp4"], {}, "kvasir-capsule:3c8d5f0b90d7475a", "train");
  for (const auto& [name, row] : rows) EXPECT_EQ(row.modality, "endoscopy") << name;
  const std::string skipped = fs::read_file(dir / "kc.skipped.csv");
  EXPECT_THAT(skipped, HasSubstr("0a1b2c3d4e5f6a7b.mp4,no labelled frame 0a1b2c3d4e5f6a7b_<frame> "
                                 "under labelled_images/"));
  EXPECT_THAT(skipped, HasSubstr("stray.jpg,not <video>_<frame> inside a class folder"));
  // Labelled videos without their frames, a split file without its column, an empty root.
  stdfs::remove_all(root / "labelled_images");
  ImportOptions o{root, dir / "bad.csv", ""};
  EXPECT_THAT(import_error("kvasir-capsule", o),
              HasSubstr("labelled_images/ was not found in " + root.string()));
  image(root / "labelled_images/Erosion/bca26705313a4644_20404.jpg", 1);
  text(root / "official_splits/split_1.csv", "file,label\nx.jpg,Ulcer\n");
  EXPECT_THAT(import_error("kvasir-capsule", o),
              HasSubstr("split_1.csv:1: no column 'filename' (columns present: file, label)"));
  stdfs::create_directories(dir / "empty");
  o.root = dir / "empty";
  EXPECT_THAT(import_error("kvasir-capsule", o),
              HasSubstr("none of labelled_images/, labelled_videos/, unlabelled_videos/ in " +
                        (dir / "empty").string()));
}

TEST(DataImport, ImportOptionsAreKeyValue) {
  ImportOptions o;
  parse_import_option("uncertain=positive", o);
  parse_import_option("views=", o);
  EXPECT_EQ(o.options.at("uncertain"), "positive");
  EXPECT_EQ(o.options.at("views"), "");
  for (const char* bad : {"uncertain", "=positive"}) {
    try {
      parse_import_option(bad, o);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(),
                  HasSubstr(std::string("import: option '") + bad + "' is not KEY=VALUE"));
    }
  }
  // An importer without options refuses any, naming none.
  testing::TempDir dir("import");
  image(dir / "in/a/x.png");
  ImportOptions f{dir / "in", dir / "m.csv", "xray"};
  f.options = {{"views", "frontal"}};
  EXPECT_THAT(import_error("folder", f),
              HasSubstr("import folder: unknown option 'views' (options of folder: none)"));
}

TEST(DataImport, UnknownNameModalityAndRoot) {
  testing::TempDir dir("import");
  ImportOptions o{dir.path(), dir / "m.csv", ""};
  try {
    import_dataset("imagenet", o);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(
        e.what(),
        HasSubstr(
            "unknown dataset 'imagenet' (known: chestxray14, hyperkvasir, busi, "
            "medmnist, folder, dicom, chexpert, mimic-cxr, totalsegmentator, kvasir-capsule)"));
  }
  o.modality = "pet";
  EXPECT_THROW(import_dataset("folder", o), Error);
  o.modality = "";
  o.root = dir / "absent";
  try {
    import_dataset("busi", o);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("is not a folder"));
  }
  // An empty tree has no samples: an error, and no manifest.
  stdfs::create_directories(dir / "empty/a");
  o.root = dir / "empty";
  o.modality = "xray";
  EXPECT_THROW(import_dataset("folder", o), Error);
  EXPECT_FALSE(stdfs::exists(dir / "m.csv"));
}

}  // namespace
}  // namespace m3ret::data
