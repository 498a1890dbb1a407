// Bad input: every unusable file is refused with m3ret::InputError naming it.
#include <cmath>
#include <fstream>
#include <limits>
#include <random>

#include <sys/stat.h>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <zlib.h>

#include "core/error.h"
#include "core/fs.h"
#include "data/itk_image.h"
#include "data/reader.h"
#include "data/video_writer.h"
#include "data_test_util.h"
#include "test_util.h"

namespace m3ret::data {
namespace {

namespace stdfs = std::filesystem;
using ::testing::HasSubstr;
using testutil::row;
using testutil::small_cfg;

// Reads and expects an InputError whose path is `file` and whose reason
// contains `reason`.
void expect_refused_with(const stdfs::path& file, const std::string& modality,
                         const PreprocessConfig& cfg, const std::string& reason) {
  try {
    read_sample(row(file, modality), file.parent_path(), cfg);
    ADD_FAILURE() << file << " was accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(e.path(), file.string());
    EXPECT_THAT(std::string(e.what()), HasSubstr(file.filename().string()));
    EXPECT_THAT(e.reason(), HasSubstr(reason)) << file;
  }
}

void expect_refused(const stdfs::path& file, const std::string& modality,
                    const std::string& reason) {
  expect_refused_with(file, modality, small_cfg(), reason);
}

void truncate_file(const stdfs::path& p, double keep) {
  const auto size = stdfs::file_size(p);
  stdfs::resize_file(p, static_cast<uintmax_t>(size * keep));
}

void write_bytes(const stdfs::path& p, size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::ofstream out(p, std::ios::binary);
  for (size_t i = 0; i < n; ++i) out.put(static_cast<char>(gen() & 0xff));
}

std::vector<int16_t> ramp_volume(size_t n) {
  std::vector<int16_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<int16_t>(-1000 + (i * 37) % 2000);
  return v;
}

TEST(DataMalformed, MissingAndEmptyFiles) {
  testing::TempDir dir("bad");
  expect_refused(dir / "absent.nii.gz", "ct", "does not exist");
  expect_refused(dir / "absent.mp4", "endoscopy", "does not exist");
  std::ofstream(dir / "empty.png").close();
  std::ofstream(dir / "empty.mp4").close();
  std::ofstream(dir / "empty.nii.gz").close();
  expect_refused(dir / "empty.png", "xray", "empty file");
  expect_refused(dir / "empty.mp4", "endoscopy", "empty file");
  expect_refused(dir / "empty.nii.gz", "ct", "empty file");
  stdfs::create_directories(dir / "no_series");
  expect_refused(dir / "no_series", "ct", "no DICOM series");
}

TEST(DataMalformed, TruncatedAndGarbageFiles) {
  testing::TempDir dir("bad");
  testutil::write_volume(dir / "cut.nii.gz", ramp_volume(32 * 32 * 16), {32, 32, 16});
  truncate_file(dir / "cut.nii.gz", 0.5);
  expect_refused(dir / "cut.nii.gz", "ct", "");
  testutil::write_volume(dir / "cut.nii", ramp_volume(32 * 32 * 16), {32, 32, 16});
  truncate_file(dir / "cut.nii", 0.5);
  expect_refused(dir / "cut.nii", "ct", "");
  write_bytes(dir / "garbage.png", 4000, 1);
  expect_refused(dir / "garbage.png", "ultrasound", "not a readable image");
  // A real PNG signature followed by garbage.
  {
    std::ofstream out(dir / "badbody.png", std::ios::binary);
    out << "\x89PNG\r\n\x1a\n";
  }
  write_bytes(dir / "tail.bin", 2000, 2);
  {
    std::ofstream out(dir / "badbody.png", std::ios::binary | std::ios::app);
    std::ifstream in(dir / "tail.bin", std::ios::binary);
    out << in.rdbuf();
  }
  expect_refused(dir / "badbody.png", "xray", "");
  write_bytes(dir / "garbage.dcm", 3000, 3);
  expect_refused(dir / "garbage.dcm", "xray", "");
}

TEST(DataMalformed, BadVideos) {
  testing::TempDir dir("bad");
  write_bytes(dir / "garbage.mp4", 5000, 4);
  expect_refused(dir / "garbage.mp4", "endoscopy", "");
  std::vector<uint8_t> rgb(8 * 32 * 32 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 7);
  video::write(dir / "cut.mp4", rgb, 8, 32, 32);
  truncate_file(dir / "cut.mp4", 0.4);
  expect_refused(dir / "cut.mp4", "endoscopy", "");
  // A video where an image or volume is expected.
  video::write(dir / "ok.mp4", rgb, 8, 32, 32);
  expect_refused(dir / "ok.mp4", "xray", "a video where a 2D xray image is expected");
  expect_refused(dir / "ok.mp4", "ct", "a video where a 3D ct volume is expected");
  // Constant frames.
  std::vector<uint8_t> flat(8 * 32 * 32 * 3, 128);
  video::write(dir / "flat.mp4", flat, 8, 32, 32);
  expect_refused(dir / "flat.mp4", "endoscopy", "constant frames");
}

TEST(DataMalformed, DecodableButMeaningless) {
  testing::TempDir dir("bad");
  // NaN and Inf voxels, in every volume format (NIfTI's reference library,
  // inside ITK, would load them as 0: the payload is scanned first).
  std::vector<float> v(16 * 16 * 8, 1.0f);
  v[5] = 2.0f;
  v[100] = std::numeric_limits<float>::quiet_NaN();
  for (const char* name : {"nan.mha", "nan.nii.gz", "nan.nii", "nan.hdr"}) {
    testutil::write_volume(dir / name, v, {16, 16, 8});
    expect_refused(dir / name, "mri", "NaN or Inf");
  }
  // A finite float volume reads, also as a .hdr/.img pair.
  std::vector<float> ramp(16 * 16 * 8);
  for (size_t i = 0; i < ramp.size(); ++i) ramp[i] = 0.5f * static_cast<float>(i);
  testutil::write_volume(dir / "ok.hdr", ramp, {16, 16, 8});
  EXPECT_EQ(read_sample(row(dir / "ok.hdr", "mri"), dir.path(), small_cfg()).T, 8);
  v[100] = -std::numeric_limits<float>::infinity();
  testutil::write_volume(dir / "inf.nii.gz", v, {16, 16, 8});
  expect_refused(dir / "inf.nii.gz", "mri", "NaN or Inf");
  v[100] = std::numeric_limits<float>::infinity();
  testutil::write_volume(dir / "inf.nrrd", v, {16, 16, 8});
  expect_refused(dir / "inf.nrrd", "ct", "NaN or Inf");
  // Constant image and volume.
  testutil::write_image<uint8_t>(dir / "flat.png", std::vector<uint8_t>(30 * 30, 77), 30, 30);
  expect_refused(dir / "flat.png", "xray", "constant image");
  testutil::write_volume(dir / "flat.nii.gz", std::vector<int16_t>(16 * 16 * 8, 40), {16, 16, 8});
  expect_refused(dir / "flat.nii.gz", "ct", "constant volume");
  // Wrong dimensionality: 2D for CT, 3D for X-ray, 4D anywhere.
  std::vector<uint8_t> img(30 * 30);
  for (size_t i = 0; i < img.size(); ++i) img[i] = static_cast<uint8_t>(i);
  testutil::write_image<uint8_t>(dir / "slice.png", img, 30, 30);
  expect_refused(dir / "slice.png", "ct", "2D image (30x30) where a 3D ct volume is expected");
  testutil::write_volume(dir / "vol.nii.gz", ramp_volume(16 * 16 * 8), {16, 16, 8});
  expect_refused(dir / "vol.nii.gz", "xray", "3D image (16x16x8) where a 2D image is expected");
  {
    using Image4 = itk::Image<float, 4>;
    auto im = Image4::New();
    Image4::SizeType s = {{8, 8, 4, 3}};
    im->SetRegions(s);
    im->Allocate();
    for (size_t i = 0; i < 8 * 8 * 4 * 3; ++i) im->GetBufferPointer()[i] = static_cast<float>(i);
    itkio::register_factories();
    auto w = itk::ImageFileWriter<Image4>::New();
    w->SetInput(im);
    w->SetFileName((dir / "fmri.nii.gz").string());
    w->Update();
  }
  expect_refused(dir / "fmri.nii.gz", "mri", "4D image");
  // Absurd spacing.
  testutil::write_volume(dir / "tiny.nii.gz", ramp_volume(16 * 16 * 8), {16, 16, 8}, {1e-9, 1, 1});
  expect_refused(dir / "tiny.nii.gz", "ct", "absurd voxel spacing");
}

TEST(DataMalformed, AbsurdSizeIsRefusedBeforeDecoding) {
  testing::TempDir dir("bad");
  // A MetaImage header announcing 40000^3 bytes next to a tiny raw file.
  std::ofstream(dir / "huge.mhd") << "ObjectType = Image\nNDims = 3\nDimSize = 40000 40000 40000\n"
                                     "ElementSpacing = 1 1 1\nElementType = MET_UCHAR\n"
                                     "ElementDataFile = huge.raw\n";
  write_bytes(dir / "huge.raw", 1000, 5);
  expect_refused(dir / "huge.mhd", "ct", "absurd image size 40000x40000x40000");
  // Absurdly large spacing (a volume of kilometres).
  testutil::write_volume(dir / "km.nii.gz", ramp_volume(16 * 16 * 8), {16, 16, 8}, {1e5, 1, 1});
  expect_refused(dir / "km.nii.gz", "ct", "absurd voxel spacing");
}

// A PNG whose header announces width x height, followed by a few bytes of
// (insufficient) image data: a decompression bomb's header without its body.
void write_png_header(const stdfs::path& p, uint32_t width, uint32_t height) {
  auto be32 = [](std::string& s, uint32_t v) {
    for (int b = 3; b >= 0; --b) s.push_back(static_cast<char>((v >> (8 * b)) & 0xff));
  };
  auto chunk = [&](std::string& out, const std::string& type, const std::string& data) {
    be32(out, static_cast<uint32_t>(data.size()));
    const std::string body = type + data;
    out += body;
    be32(out,
         static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), body.size())));
  };
  std::string ihdr, png = "\x89PNG\r\n\x1a\n";
  be32(ihdr, width);
  be32(ihdr, height);
  ihdr += std::string("\x08\x00\x00\x00\x00", 5);  // 8-bit grey, deflate, no filter, no interlace
  chunk(png, "IHDR", ihdr);
  chunk(png, "IDAT", std::string("\x78\x9c\x63\x00\x00\x00\x01\x00\x01", 9));
  chunk(png, "IEND", "");
  std::ofstream(p, std::ios::binary) << png;
}

// Decompression bombs: whatever the header promises beyond
// preprocess.max_input_pixels (per image, volume or video frame) or
// preprocess.max_video_frames is refused before decoding, naming the shape and
// the limit; the same inputs read under the limit.
TEST(DataMalformed, InputsPromisingMoreThanTheLimitsAreRefusedBeforeDecoding) {
  testing::TempDir dir("bad");
  write_png_header(dir / "bomb.png", 30000, 30000);  // the default limit refuses it
  expect_refused(dir / "bomb.png", "xray",
                 "absurd image size 30000x30000: 900000000 pixels, more than "
                 "preprocess.max_input_pixels = 536870912");
  PreprocessConfig cfg = small_cfg();
  std::vector<uint8_t> img(200 * 150);
  for (size_t i = 0; i < img.size(); ++i) img[i] = static_cast<uint8_t>(i % 251);
  testutil::write_image<uint8_t>(dir / "a.png", img, 200, 150);
  testutil::write_image<uint8_t>(dir / "a.jpg", img, 200, 150);
  testutil::write_volume(dir / "v.nii.gz", ramp_volume(16 * 16 * 8), {16, 16, 8});
  testutil::write_ct_series(dir / "series", ramp_volume(16 * 16 * 8), {16, 16, 8}, -1024);
  std::vector<uint8_t> rgb(12 * 32 * 24 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 7);
  video::write(dir / "v.mp4", rgb, 12, 32, 24);
  for (const char* f : {"a.png", "a.jpg"})
    EXPECT_NO_THROW(read_sample(row(dir / f, "xray"), dir.path(), cfg));
  for (const char* f : {"v.nii.gz", "series"})
    EXPECT_NO_THROW(read_sample(row(dir / f, "ct"), dir.path(), cfg));
  EXPECT_NO_THROW(read_sample(row(dir / "v.mp4", "endoscopy"), dir.path(), cfg));

  cfg.max_input_pixels = 2000;
  const std::string limit = "more than preprocess.max_input_pixels = 2000";
  expect_refused_with(dir / "a.png", "xray", cfg,
                      "absurd image size 200x150: 30000 pixels, " + limit);
  expect_refused_with(dir / "a.jpg", "xray", cfg,
                      "absurd image size 200x150: 30000 pixels, " + limit);
  expect_refused_with(dir / "v.nii.gz", "ct", cfg,
                      "absurd image size 16x16x8: 2048 pixels, " + limit);
  expect_refused_with(dir / "series", "ct", cfg,
                      "absurd image size 16x16x8: 2048 pixels, " + limit);
  cfg.max_input_pixels = 700;
  expect_refused_with(dir / "v.mp4", "endoscopy", cfg, "absurd image size 24x32: 768 pixels");
  cfg.max_input_pixels = kDefaultMaxInputPixels;
  cfg.max_video_frames = 10;
  expect_refused_with(dir / "v.mp4", "endoscopy", cfg,
                      "more than preprocess.max_video_frames = 10");
}

// A FIFO, a directory or a device where a file is expected would block or
// mislead the readers: refused without being opened (a test that hangs here
// has regressed).
TEST(DataMalformed, FifosAndDevicesAreRefusedWithoutOpeningThem) {
  testing::TempDir dir("bad");
  for (const char* name : {"pipe.png", "pipe.nii.gz", "pipe.mp4"}) {
    ASSERT_EQ(mkfifo((dir / name).c_str(), 0600), 0);
  }
  expect_refused(dir / "pipe.png", "xray", "not a regular file (a FIFO)");
  expect_refused(dir / "pipe.nii.gz", "ct", "not a regular file (a FIFO)");
  expect_refused(dir / "pipe.mp4", "endoscopy", "not a regular file (a FIFO)");
  stdfs::create_symlink("/dev/zero", dir / "zero.png");
  expect_refused(dir / "zero.png", "xray", "not a regular file (a device)");
  // A DICOM series folder holding a FIFO: GDCM would open it; refused first.
  testutil::write_ct_series(dir / "series", ramp_volume(16 * 16 * 4), {16, 16, 4}, -1024);
  ASSERT_EQ(mkfifo((dir / "series/pipe").c_str(), 0600), 0);
  expect_refused(dir / "series", "ct", "pipe: not a regular file (a FIFO)");
}

// GDCM aborts the process on some cut or mutated DICOM files: DICOM inputs are
// decoded in a child process, so each such file costs its row (refused with
// the reason, naming it) and never the reader. Cuts at every 100 bytes and
// byte mutations over the whole file: every one is read or refused, and at
// least one cut makes the decoder crash (the case isolation exists for).
TEST(DataMalformed, CutAndMutatedDicomFilesAreRefusedNeverFatal) {
  testing::TempDir dir("bad");
  std::vector<uint16_t> px(64 * 48);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint16_t>((i * 37) % 4000);
  testutil::write_dicom(dir / "ok.dcm", px, 64, 48, "DX", {{"0010|0020", "P1"}});
  const std::string bytes = fs::read_file(dir / "ok.dcm");
  int crashed = 0, refused = 0;
  auto probe = [&](const stdfs::path& p) {
    try {
      read_sample(row(p, "xray"), dir.path(), small_cfg());
    } catch (const InputError& e) {
      EXPECT_EQ(e.path(), p.string());
      ++refused;
      crashed += e.reason().find("the decoder crashed") != std::string::npos;
    }
  };
  for (size_t cut = 100; cut < bytes.size(); cut += 100) {
    const auto p = dir / fmt::format("cut{}.dcm", cut);
    std::ofstream(p, std::ios::binary) << bytes.substr(0, cut);
    probe(p);
  }
  std::mt19937 gen(7);
  for (int k = 0; k < 40; ++k) {
    std::string m = bytes;
    for (int j = 0; j < 4; ++j)
      m[132 + gen() % 600] = static_cast<char>(gen() & 0xff);  // header bytes
    const auto p = dir / fmt::format("mutated{}.dcm", k);
    std::ofstream(p, std::ios::binary) << m;
    probe(p);
  }
  EXPECT_GT(refused, 30);
  EXPECT_GT(crashed, 0) << "no input made GDCM abort: the test no longer exercises the isolation";
  EXPECT_NO_THROW(read_sample(row(dir / "ok.dcm", "xray"), dir.path(), small_cfg()));
}

// A NIfTI header found by fuzz_image (tests/fuzz/corpus/image/, after the fuzzer's format byte)
// whose orientation ITK's NIfTI reader hands to vnl_svd, which aborts the process: the header's
// matrices are checked first, so it costs its row.
TEST(DataMalformed, ANiftiHeaderOnWhichItkAbortsCostsItsRowNotTheProcess) {
  testing::TempDir dir("bad");
  const auto found =
      testing::source_dir() / "tests/fuzz/corpus/image/nifti-orientation-aborts-itk.bin";
  ASSERT_TRUE(stdfs::is_regular_file(found)) << found;
  fs::write_atomic(dir / "found.nii", fs::read_file(found).substr(1));
  expect_refused(dir / "found.nii", "mri", "bad NIfTI orientation: its sform matrix is not finite");
}

// Mislabelled files: the content decides for image formats that ITK
// recognises by content; a video is recognised by its extension, so a video
// under an image name is refused (and vice versa) with the reason.
TEST(DataMalformed, MislabelledFiles) {
  testing::TempDir dir("bad");
  std::vector<uint8_t> img(40 * 30);
  for (size_t i = 0; i < img.size(); ++i) img[i] = static_cast<uint8_t>(i % 200);
  testutil::write_image<uint8_t>(dir / "a.png", img, 40, 30);
  stdfs::copy_file(dir / "a.png", dir / "png-named.jpg");
  const Sample want = read_sample(row(dir / "a.png", "xray"), dir.path(), small_cfg());
  EXPECT_EQ(read_sample(row(dir / "png-named.jpg", "xray"), dir.path(), small_cfg()).pixels,
            want.pixels);
  std::vector<uint8_t> rgb(8 * 32 * 32 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 7);
  video::write(dir / "v.mp4", rgb, 8, 32, 32);
  stdfs::copy_file(dir / "v.mp4", dir / "mp4-named.png");
  expect_refused(dir / "mp4-named.png", "endoscopy", "not a readable image");
  stdfs::copy_file(dir / "a.png", dir / "png-named.mp4");
  // FFmpeg probes the content: a PNG is a one-frame clip (repeated F times).
  Sample still = read_sample(row(dir / "png-named.mp4", "endoscopy"), dir.path(), small_cfg());
  EXPECT_EQ(still.T, 4);
  // A non-video modality never takes a video name.
  expect_refused(dir / "png-named.mp4", "xray", "a video where a 2D xray image is expected");
}

// Every format cut at several points, and with its body overwritten by
// garbage: the reader either refuses with InputError or returns a full-size
// sample; it never crashes or throws anything else.
TEST(DataMalformed, CutAndCorruptedFilesOfEveryFormat) {
  testing::TempDir dir("bad");
  std::vector<uint8_t> img(40 * 36);
  for (size_t i = 0; i < img.size(); ++i) img[i] = static_cast<uint8_t>((i * 13) % 251);
  std::vector<std::pair<std::string, std::string>> files;  // name, modality
  for (const char* name : {"a.png", "a.jpg", "a.tif", "a.bmp"}) {
    testutil::write_image<uint8_t>(dir / name, img, 40, 36);
    files.emplace_back(name, "xray");
  }
  std::vector<uint16_t> img16(img.begin(), img.end());
  testutil::write_dicom(dir / "a.dcm", img16, 40, 36, "DX");
  files.emplace_back("a.dcm", "xray");
  for (const char* name : {"v.nii.gz", "v.nii", "v.nrrd", "v.mha"}) {
    testutil::write_volume(dir / name, ramp_volume(20 * 20 * 10), {20, 20, 10});
    files.emplace_back(name, "ct");
  }
  std::vector<uint8_t> rgb(8 * 32 * 32 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 7);
  video::write(dir / "c.mp4", rgb, 8, 32, 32);
  files.emplace_back("c.mp4", "endoscopy");
  video::write(dir / "c.avi", rgb, 8, 32, 32, 10, "mpeg4");
  files.emplace_back("c.avi", "endoscopy");

  int refused = 0, cases = 0;
  for (const auto& [name, modality] : files) {
    const auto original = dir / name;
    const auto size = stdfs::file_size(original);
    for (double keep : {0.1, 0.5, 0.9, 0.99}) {
      for (bool garbage : {false, true}) {
        const auto bad = dir / ("bad-" + std::to_string(cases++) + "-" + name);
        stdfs::copy_file(original, bad);
        if (garbage) {  // overwrite from `keep` to the end with random bytes
          std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
          f.seekp(static_cast<std::streamoff>(size * keep));
          std::mt19937 gen(static_cast<unsigned>(cases));
          for (auto i = static_cast<uintmax_t>(size * keep); i < size; ++i)
            f.put(static_cast<char>(gen()));
        } else {
          truncate_file(bad, keep);
        }
        try {
          Sample s = read_sample(row(bad, modality), dir.path(), small_cfg());
          EXPECT_EQ(static_cast<int64_t>(s.pixels.size()), s.numel()) << bad;
        } catch (const InputError& e) {
          EXPECT_EQ(e.path(), bad.string());
          ++refused;
        }
      }
    }
  }
  // Truncations of the uncompressed and compressed formats are caught.
  EXPECT_GT(refused, cases / 2);
}

}  // namespace
}  // namespace m3ret::data
