// DICOM: transfer syntaxes (converted by GDCM's own gdcmconv and its library),
// multi-frame files, several series in one folder, headers, mislabelled
// modality tags.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <gdcmImageChangeTransferSyntax.h>
#include <gdcmImageReader.h>
#include <gdcmImageWriter.h>
#include <gdcmReader.h>
#include <itkGDCMImageIO.h>
#include <itkImageFileWriter.h>
#include <itkMetaDataObject.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/fork_server.h"
#include "data/dicom.h"
#include "data/itk_image.h"
#include "data/reader.h"
#include "data_test_util.h"
#include "test_util.h"

namespace m3ret::data {
namespace {

namespace stdfs = std::filesystem;
using ::testing::HasSubstr;
using testutil::row;
using testutil::small_cfg;

// The Transfer Syntax UID (0002,0010) of a file, as stored.
std::string transfer_syntax(const stdfs::path& file) {
  gdcm::Reader r;
  r.SetFileName(file.c_str());
  if (!r.Read()) return "unreadable";
  const gdcm::ByteValue* v =
      r.GetFile().GetHeader().GetDataElement(gdcm::Tag(0x0002, 0x0010)).GetByteValue();
  if (!v) return "absent";
  std::string uid(v->GetPointer(), v->GetLength());
  while (!uid.empty() && (uid.back() == '\0' || uid.back() == ' ')) uid.pop_back();
  return uid;
}

// gdcmconv from libgdcm-tools (installed by setup.sh).
void gdcmconv(const std::string& flags, const stdfs::path& in, const stdfs::path& out) {
  std::string log;
  const int rc = testing::run_command(
      fmt::format("gdcmconv {} '{}' '{}'", flags, in.string(), out.string()), &log);
  ASSERT_EQ(rc, 0) << "gdcmconv " << flags << " failed (apt-get install libgdcm-tools): " << log;
}

// Writes any ITK image through GDCM (a 3D image becomes a multi-frame file).
template <class Image>
void write_with_gdcm(const typename Image::Pointer& img, const stdfs::path& path,
                     const std::string& modality) {
  itk::EncapsulateMetaData<std::string>(img->GetMetaDataDictionary(), "0008|0060", modality);
  itkio::register_factories();
  auto w = itk::ImageFileWriter<Image>::New();
  w->SetInput(img);
  w->SetFileName(path.string());
  w->SetImageIO(itk::GDCMImageIO::New());
  w->Update();
}

std::vector<uint16_t> ramp16(size_t w, size_t h) {
  std::vector<uint16_t> v(w * h);
  for (size_t y = 0; y < h; ++y)
    for (size_t x = 0; x < w; ++x) v[y * w + x] = static_cast<uint16_t>(100 + x * 61 + y * 17);
  return v;
}

TEST(DataDicom, CompressedAndImplicitTransferSyntaxesDecodeLosslessly) {
  testing::TempDir dir("dicom");
  testutil::write_dicom(dir / "raw.dcm", ramp16(40, 36), 40, 36, "DX");
  // ITK writes implicit VR little endian; gdcmconv converts to the others.
  EXPECT_EQ(transfer_syntax(dir / "raw.dcm"), "1.2.840.10008.1.2");
  const Sample want = read_sample(row(dir / "raw.dcm", "xray"), dir.path(), small_cfg());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--jpeg", "1.2.840.10008.1.2.4.70"},  {"--jpegls", "1.2.840.10008.1.2.4.80"},
      {"--j2k", "1.2.840.10008.1.2.4.90"},   {"--rle", "1.2.840.10008.1.2.5"},
      {"--explicit", "1.2.840.10008.1.2.1"}, {"--deflated", "1.2.840.10008.1.2.1.99"},
  };
  for (const auto& [flag, syntax] : cases) {
    const auto out = dir / ("conv" + flag + ".dcm");
    gdcmconv(flag, dir / "raw.dcm", out);
    EXPECT_EQ(transfer_syntax(out), syntax) << flag;
    Sample s = read_sample(row(out, "xray"), dir.path(), small_cfg());
    EXPECT_EQ(s.pixels, want.pixels) << flag;
  }
}

TEST(DataDicom, LossyJpegBaselineIsCloseToTheOriginal) {
  testing::TempDir dir("dicom");
  using Image = itk::Image<uint8_t, 2>;
  auto img = Image::New();
  img->SetRegions(Image::SizeType{{48, 48}});
  img->Allocate();
  for (size_t y = 0; y < 48; ++y)
    for (size_t x = 0; x < 48; ++x)
      img->GetBufferPointer()[y * 48 + x] = static_cast<uint8_t>(x * 5);
  write_with_gdcm<Image>(img, dir / "us8.dcm", "US");
  gdcmconv("--jpeg --lossy -q 95", dir / "us8.dcm", dir / "baseline.dcm");
  EXPECT_EQ(transfer_syntax(dir / "baseline.dcm"), "1.2.840.10008.1.2.4.50");  // JPEG baseline
  auto cfg = small_cfg();
  cfg.image_size = 48;  // no resampling: compare values directly
  const Sample a = read_sample(row(dir / "us8.dcm", "ultrasound"), dir.path(), cfg);
  const Sample b = read_sample(row(dir / "baseline.dcm", "ultrasound"), dir.path(), cfg);
  ASSERT_EQ(a.pixels.size(), b.pixels.size());
  double err = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i)
    err = std::max(err, std::abs(double(a.pixels[i]) - b.pixels[i]));
  EXPECT_LE(err, 12.0);
  EXPECT_GT(a.pixels[24 * 48 + 40], 180);  // the ramp survives: x = 40 -> 200
}

TEST(DataDicom, ExplicitVrBigEndian) {
  testing::TempDir dir("dicom");
  testutil::write_dicom(dir / "raw.dcm", ramp16(40, 36), 40, 36, "DX");
  gdcm::ImageReader r;
  r.SetFileName((dir / "raw.dcm").c_str());
  ASSERT_TRUE(r.Read());
  gdcm::ImageChangeTransferSyntax change;
  change.SetTransferSyntax(gdcm::TransferSyntax::ExplicitVRBigEndian);
  change.SetInput(r.GetImage());
  ASSERT_TRUE(change.Change());
  gdcm::ImageWriter w;
  w.SetFileName((dir / "be.dcm").c_str());
  w.SetFile(r.GetFile());
  w.SetImage(change.GetOutput());
  ASSERT_TRUE(w.Write());
  EXPECT_EQ(transfer_syntax(dir / "be.dcm"), "1.2.840.10008.1.2.2");
  const Sample want = read_sample(row(dir / "raw.dcm", "xray"), dir.path(), small_cfg());
  EXPECT_EQ(read_sample(row(dir / "be.dcm", "xray"), dir.path(), small_cfg()).pixels, want.pixels);
}

TEST(DataDicom, MultiFrameFileIsAVolume) {
  testing::TempDir dir("dicom");
  using Image = itk::Image<int16_t, 3>;
  auto img = Image::New();
  img->SetRegions(Image::SizeType{{20, 20, 10}});
  Image::SpacingType sp;
  sp[0] = sp[1] = 1.0;
  sp[2] = 2.5;
  img->SetSpacing(sp);
  img->Allocate();
  for (size_t z = 0; z < 10; ++z)
    for (size_t i = 0; i < 400; ++i) img->GetBufferPointer()[z * 400 + i] = z < 5 ? -1000 : 1000;
  write_with_gdcm<Image>(img, dir / "multi.dcm", "CT");
  EXPECT_EQ(dicom::read_header(dir / "multi.dcm").frames, 10);
  auto cfg = small_cfg();
  cfg.resize = "crop";
  Sample s = read_sample(row(dir / "multi.dcm", "ct"), dir.path(), cfg);
  ASSERT_EQ(s.T, 8);
  EXPECT_EQ(s.pixels[(0 * 16 + 8) * 16 + 8], 0);    // first frames: -1000 HU
  EXPECT_EQ(s.pixels[(7 * 16 + 8) * 16 + 8], 255);  // last frames: 1000 HU
  // A folder holding only this file is the same volume.
  stdfs::create_directories(dir / "one");
  stdfs::copy_file(dir / "multi.dcm", dir / "one/multi.dcm");
  EXPECT_EQ(read_sample(row(dir / "one", "ct"), dir.path(), cfg).pixels, s.pixels);
}

// n x n x d voxels of `hu`, except one corner voxel at 0 HU (not constant).
std::vector<int16_t> flat_hu(size_t n, size_t d, int16_t hu) {
  std::vector<int16_t> v(n * n * d, hu);
  v[0] = 0;
  return v;
}

TEST(DataDicom, SeveralSeriesInOneFolderAreGroupedByUid) {
  testing::TempDir dir("dicom");
  const std::string uid_a = "1.2.826.0.1.3680043.2.1125.7.1",
                    uid_b = "1.2.826.0.1.3680043.2.1125.7.2";
  // Series A: 10 slices at -1000 HU; series B: 6 slices at +1000 HU; files interleaved by name.
  testutil::write_ct_series(dir / "mixed", flat_hu(16, 10, -1000), {16, 16, 10}, -1024, uid_a, "A",
                            "PA");
  testutil::write_ct_series(dir / "mixed", flat_hu(16, 6, 1000), {16, 16, 6}, -1024, uid_b, "B",
                            "PB");
  const auto series = dicom::list_series(dir / "mixed");
  ASSERT_EQ(series.size(), 2u);
  EXPECT_EQ(series[0].files.size(), 10u);  // largest first
  EXPECT_EQ(series[1].files.size(), 6u);
  EXPECT_EQ(series[0].header.series_uid, uid_a);
  EXPECT_EQ(series[1].header.series_uid, uid_b);
  EXPECT_EQ(series[1].header.patient_id, "PB");
  EXPECT_EQ(series[1].header.modality, "CT");
  // Files come ordered by position: B0006 holds z = 0, B0001 the top slice.
  EXPECT_EQ(series[1].files.front().filename(), "B0006.dcm");
  EXPECT_EQ(series[1].files.back().filename(), "B0001.dcm");

  auto cfg = small_cfg();
  Sample a = read_sample(row(dir / "mixed", "ct"), dir.path(), cfg);  // the largest series
  EXPECT_EQ(a.pixels[(4 * 16 + 8) * 16 + 8], 0);
  const auto ref_b = dicom::series_ref(dir / "mixed", series[1].id);
  Sample b = read_sample(row(ref_b, "ct"), dir.path(), cfg);
  EXPECT_EQ(b.pixels[(4 * 16 + 8) * 16 + 8], 255);
  EXPECT_EQ(b.source, ref_b.string());
  try {
    read_sample(row(dicom::series_ref(dir / "mixed", "9.9.9"), "ct"), dir.path(), cfg);
    ADD_FAILURE() << "an unknown series was read";
  } catch (const InputError& e) {
    EXPECT_THAT(e.reason(), HasSubstr("no DICOM series '9.9.9'"));
    EXPECT_THAT(e.path(), HasSubstr("mixed#9.9.9"));
  }
}

TEST(DataDicom, ModalityTagThatContradictsTheManifestIsRefused) {
  testing::TempDir dir("dicom");
  testutil::write_ct_series(dir / "ct", flat_hu(16, 4, 0), {16, 16, 4}, -1024);
  testutil::write_dicom(dir / "dx.dcm", ramp16(40, 36), 40, 36, "DX");
  auto expect_mislabelled = [&](const stdfs::path& p, const std::string& modality,
                                const std::string& what) {
    try {
      read_sample(row(p, modality), dir.path(), small_cfg());
      ADD_FAILURE() << p << " accepted as " << modality;
    } catch (const InputError& e) {
      EXPECT_EQ(e.path(), p.string());
      EXPECT_THAT(e.reason(), HasSubstr(what));
    }
  };
  expect_mislabelled(dir / "ct", "mri",
                     "mislabelled: DICOM Modality 'CT' is ct, the manifest says mri");
  expect_mislabelled(dir / "dx.dcm", "ultrasound",
                     "DICOM Modality 'DX' is xray, the manifest says ultrasound");
  // "other" takes any DICOM; the matching modality reads.
  EXPECT_EQ(read_sample(row(dir / "dx.dcm", "other"), dir.path(), small_cfg()).H, 32);
  EXPECT_EQ(read_sample(row(dir / "dx.dcm", "xray"), dir.path(), small_cfg()).H, 32);
}

// The same anatomy stored with rows running right to left: canonical
// orientation gives the same sample.
TEST(DataDicom, FlippedOrientationSeriesIsCanonicalised) {
  testing::TempDir dir("dicom");
  const size_t n = 20, d = 8;
  std::vector<int16_t> hu(n * n * d);
  for (size_t z = 0; z < d; ++z)
    for (size_t y = 0; y < n; ++y)
      for (size_t x = 0; x < n; ++x)
        hu[(z * n + y) * n + x] = static_cast<int16_t>(-1000 + 100 * x + 7 * z);
  testutil::write_ct_series(dir / "plain", hu, {n, n, d}, -1024);
  testutil::write_ct_series(dir / "flipped", hu, {n, n, d}, -1024, "1.2.826.0.1.3680043.2.1125.1.3",
                            "IM", "P1",
                            /*flip_x=*/true);
  const Sample a = read_sample(row(dir / "plain", "ct"), dir.path(), small_cfg());
  const Sample b = read_sample(row(dir / "flipped", "ct"), dir.path(), small_cfg());
  ASSERT_EQ(a.pixels.size(), b.pixels.size());
  int max_diff = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i)
    max_diff = std::max(max_diff, std::abs(a.pixels[i] - b.pixels[i]));
  EXPECT_LE(max_diff, 1);
  // x runs left to right in both: dark (low x, -1000 HU) to bright.
  EXPECT_LT(a.pixels[(4 * 16 + 8) * 16 + 2], a.pixels[(4 * 16 + 8) * 16 + 13]);
}

// MONOCHROME1 (low values bright) comes out so that bright means dense:
// gdcmconv -P rewrites the pixels (65535 - v) under the MONOCHROME1 tag,
// keeping the displayed image, so both files must give the same sample.
// (GDCM inside ITK inverts on reading; an extra inversion would fail this.)
TEST(DataDicom, Monochrome1IsInverted) {
  testing::TempDir dir("dicom");
  testutil::write_dicom(dir / "m2.dcm", ramp16(40, 36), 40, 36, "DX");
  gdcmconv("-P MONOCHROME1", dir / "m2.dcm", dir / "m1.dcm");
  gdcm::Reader r;
  r.SetFileName((dir / "m1.dcm").c_str());
  ASSERT_TRUE(r.Read());
  const gdcm::ByteValue* pi =
      r.GetFile().GetDataSet().GetDataElement(gdcm::Tag(0x0028, 0x0004)).GetByteValue();
  ASSERT_NE(pi, nullptr);
  EXPECT_EQ(std::string(pi->GetPointer(), 11), "MONOCHROME1");
  const Sample a = read_sample(row(dir / "m2.dcm", "xray"), dir.path(), small_cfg());
  const Sample b = read_sample(row(dir / "m1.dcm", "xray"), dir.path(), small_cfg());
  ASSERT_EQ(a.pixels.size(), b.pixels.size());
  int max_diff = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i)
    max_diff = std::max(max_diff, std::abs(a.pixels[i] - b.pixels[i]));
  EXPECT_LE(max_diff, 1);
  EXPECT_LT(b.pixels[16 * 32 + 2], b.pixels[16 * 32 + 29]);  // the ramp still rises left to right
}

TEST(DataDicom, ModalityCodes) {
  EXPECT_EQ(dicom::modality_for("CT"), "ct");
  EXPECT_EQ(dicom::modality_for("MR"), "mri");
  EXPECT_EQ(dicom::modality_for("CR"), "xray");
  EXPECT_EQ(dicom::modality_for("DX"), "xray");
  EXPECT_EQ(dicom::modality_for("MG"), "xray");
  EXPECT_EQ(dicom::modality_for("US"), "ultrasound");
  EXPECT_EQ(dicom::modality_for("ES"), "endoscopy");
  EXPECT_EQ(dicom::modality_for("OT"), "");
  testing::TempDir dir("dicom");
  std::ofstream(dir / "not.dcm") << "hello, not DICOM at all";
  EXPECT_THROW(dicom::read_header(dir / "not.dcm"), InputError);
}

// A 1.7 KB file found by fuzz_image (tests/fuzz/corpus/image/, after the fuzzer's format byte)
// whose data element declares 1.8 GB: GDCM, listing the folder's series (`m3ret import dicom`),
// allocated and zeroed them. The listing runs in a child process: this one's memory stays
// unchanged.
TEST(DataDicom, AFileOnWhichGdcmAllocatesGigabytesIsListedInAChild) {
  testing::TempDir dir("dicom-fuzzed");
  const auto found =
      m3ret::testing::source_dir() / "tests/fuzz/corpus/image/gdcm-listing-allocates-1.8-GB.bin";
  ASSERT_TRUE(stdfs::is_regular_file(found)) << found;
  stdfs::create_directories(dir / "one");
  {
    std::ifstream in(found, std::ios::binary);
    in.get();  // the fuzzer's format byte
    std::ofstream(dir / "one/input.dcm", std::ios::binary) << in.rdbuf();
  }
  auto peak_mb = [] {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
  };
  const long before = peak_mb();
  try {
    EXPECT_TRUE(dicom::list_series(dir / "one").empty());
  } catch (const InputError& e) {
    EXPECT_EQ(e.path(), (dir / "one").string());
  }
  EXPECT_LT(peak_mb() - before, 512) << "MB more at peak in this process";
  // Under a tighter memory limit the child runs out of memory (under ASan its report ends it) or
  // GDCM gives up on the file: nothing is listed, and an error names the folder.
  auto limits = dicom::listing_limits();
  limits.memory_mb = 256;
  try {
    const auto series = dicom::list_series(dir / "one", limits);
    EXPECT_TRUE(series.empty()) << series.size() << " series";
  } catch (const InputError& e) {
    EXPECT_EQ(e.path(), (dir / "one").string()) << e.what();
  }
}

// Decodes a DICOM file in its child 150 times in each of two threads while two other threads
// read PNG and NIfTI through ITK in this process (what `m3ret shard` and the loader do); the
// first error ("" when none).
std::string decode_dicom_beside_itk_readers(const stdfs::path& dir) {
  auto cfg = small_cfg();
  cfg.decode_timeout_s = 20;
  std::atomic<bool> stop{false};
  std::string first_failure;
  std::mutex mu;
  auto loop = [&](const stdfs::path& file, const std::string& modality, int rounds) {
    for (int i = 0; i < rounds && !stop; ++i) {
      try {
        read_sample(row(file, modality), dir, cfg);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mu);
        if (first_failure.empty()) first_failure = e.what();
        stop = true;
      }
    }
  };
  constexpr int kRounds = 150;
  std::vector<std::thread> threads;
  threads.emplace_back([&] { loop(dir / "x.dcm", "xray", kRounds); });
  threads.emplace_back([&] { loop(dir / "x.dcm", "xray", kRounds); });
  threads.emplace_back([&] {
    while (!stop) loop(dir / "x.png", "xray", 1);
  });
  threads.emplace_back([&] {
    while (!stop) loop(dir / "ct.nii.gz", "ct", 1);
  });
  threads[0].join();
  threads[1].join();
  stop = true;
  threads[2].join();
  threads[3].join();
  return first_failure;
}

// No decoding child may inherit a lock that another thread held at the fork (ITK's reader
// factory, the allocator's) and wait for it until the decode timeout: the children are forked
// by the fork server (one thread), and a process without one forks only while no thread is
// inside ITK (data::isolate::LibraryScope).
TEST(DataDicom, DecodingChildrenForkedWhileOtherThreadsReadThroughItkNeverWait) {
  testing::TempDir dir("dicom-concurrent");
  testutil::write_dicom(dir / "x.dcm", ramp16(40, 30), 40, 30, "DX");
  std::vector<uint8_t> grey(48 * 40);
  for (size_t i = 0; i < grey.size(); ++i) grey[i] = static_cast<uint8_t>(i * 7);
  testutil::write_image(dir / "x.png", grey, 48, 40);
  std::vector<float> vol(16 * 16 * 8);
  for (size_t i = 0; i < vol.size(); ++i) vol[i] = static_cast<float>(i % 97);
  testutil::write_volume(dir / "ct.nii.gz", vol, {16, 16, 8}, {2, 2, 2});
  ASSERT_GT(fork_server::pid(), 0) << "no fork server (tests/test_main.cc starts one)";
  EXPECT_EQ(decode_dicom_beside_itk_readers(dir.path()), "");
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "without a fork server: GCC 12's AddressSanitizer does not lock its allocator "
                  "around fork(), so a child forked while another thread allocates can wait on "
                  "its lock (docs/reliability.md, \"Forking beside other threads\")";
#endif
  // A forked copy of this process has no fork server: it forks its children itself.
  const auto result = dir / "without-server.txt";
  const pid_t copy = ::fork();
  ASSERT_GE(copy, 0);
  if (copy == 0) {
    const std::string failure = fork_server::pid() == 0
                                    ? decode_dicom_beside_itk_readers(dir.path())
                                    : "the copy has a fork server";
    std::ofstream(result) << failure;
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(copy, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::string text;
  std::getline(std::ifstream(result), text);
  EXPECT_EQ(text, "") << "without a fork server";
}

}  // namespace
}  // namespace m3ret::data
