// Input images and videos, decoded as `m3ret shard` and `search --query` decode them: the first
// byte of an input picks a format and a modality, the other bytes are written to a file with
// that format's extension and read by data::read_sample (DICOM in a forked child with a 5 s
// time limit, the other formats in-process: ITK for NIfTI and PNG, FFmpeg for videos); a DICOM
// file is also listed as `m3ret import dicom` lists a folder (dicom::list_series, in a child
// too). Decompression bombs: the preprocessing here refuses more than 4 Mi pixels per image,
// volume or frame and more than 1000 frames per video, so an input that makes a decoder
// allocate beyond those limits (libFuzzer's 2 GB) is a finding. Seeds: the files `m3ret synth`
// writes (a DX DICOM, CT and MRI NIfTI, a grey PNG, an MP4), each behind the byte of each
// format it is read as, and the fixed findings (docs/reliability.md, "Fuzzers").
#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>

#include "data/dicom.h"
#include "data/manifest.h"
#include "data/preprocess.h"
#include "data/reader.h"
#include "data/synth.h"
#include "fuzz_util.h"

namespace {

namespace stdfs = std::filesystem;

// What the first byte selects (its value modulo 8): the file's extension, the manifest's
// modality (which picks the pipeline: volume, 2D grey or colour image, video) and the
// preprocessing.
struct Format {
  const char* extension;
  const char* modality;
  bool stored_video;  // `m3ret shard` stores every sampled frame of a video ...
  bool crop;          // ... and resize = "crop" instead of "pad"
};
constexpr Format kFormats[] = {
    {".dcm", "xray", false, false},      {".dcm", "ct", false, false},
    {".nii.gz", "ct", false, false},     {".nii", "mri", false, true},
    {".png", "xray", false, false},      {".png", "endoscopy", false, true},
    {".mp4", "endoscopy", false, false}, {".avi", "endoscopy", true, true},
};
constexpr size_t kNumFormats = sizeof(kFormats) / sizeof(kFormats[0]);

m3ret::data::PreprocessConfig preprocess(const Format& f) {
  m3ret::data::PreprocessConfig cfg;
  cfg.image_size = 16;
  cfg.video_frames = 2;
  cfg.video_frame_stride = 2;
  cfg.video_stored_frames = 4;
  cfg.stored_video = f.stored_video;
  cfg.resize = f.crop ? "crop" : "pad";
  cfg.max_input_pixels = int64_t{1} << 22;
  cfg.max_video_frames = 1000;
  cfg.decode_timeout_s = 5;
  cfg.decode_memory_mb = 1024;
  return cfg;
}

// list_series's child (GDCM reads the folder's files whole), with the limits of decoding here.
m3ret::data::isolate::Limits listing_limits() {
  auto limits = m3ret::data::dicom::listing_limits();
  limits.timeout_s = 5;
  limits.memory_mb = 1024;
  return limits;
}

std::string read_bytes(const stdfs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string gunzip(const stdfs::path& path) {
  gzFile in = gzopen(path.c_str(), "rb");
  std::string out;
  char buf[1 << 14];
  for (int n; in && (n = gzread(in, buf, sizeof(buf))) > 0;) out.append(buf, size_t(n));
  if (in) gzclose(in);
  return out;
}

// The first file under dir/sub with extension `ext`.
stdfs::path first_file(const stdfs::path& dir, const std::string& ext) {
  for (const auto& e : stdfs::recursive_directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0)
      return e.path();
  }
  throw m3ret::Error("fuzz_image seeds: no " + ext + " file under " + dir.string());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // A sanitizer report in a DICOM decoding or listing child ends only that child (fuzz_util.h).
  m3ret::fuzz::forked_children_die_quietly();
  m3ret::fuzz::write_seeds_if_asked([](const stdfs::path& dir) {
    m3ret::data::SynthConfig cfg;
    cfg.classes = {"normal", "nodule"};
    cfg.patients_per_class = 1;
    cfg.samples_per_patient = 1;
    cfg.image_size = 16;
    cfg.volume_size = 8;
    cfg.volume_slices = 4;
    cfg.video_frames = 4;
    cfg.video_width = 16;
    cfg.video_height = 12;
    const stdfs::path synth = m3ret::fuzz::scratch_dir() / "synth";
    m3ret::data::synthesize(cfg, synth);
    auto seed = [&](const std::string& name, size_t format, const std::string& bytes) {
      std::ofstream(dir / name, std::ios::binary) << static_cast<char>(format) << bytes;
    };
    const std::string dcm = read_bytes(first_file(synth / "xray", ".dcm"));
    const std::string png = read_bytes(first_file(synth / "ultrasound", ".png"));
    const std::string mp4 = read_bytes(first_file(synth / "endoscopy", ".mp4"));
    seed("dicom-dx-as-xray.bin", 0, dcm);
    // The DX file relabelled CT (Modality (0008,0060), explicit VR "CS", 2 bytes), for the
    // volume pipeline.
    std::string ct = dcm;
    const std::string dx(
        "\x08\x00\x60\x00"
        "CS\x02\x00"
        "DX",
        10);
    if (const size_t at = ct.find(dx); at != std::string::npos) ct.replace(at + 8, 2, "CT");
    seed("dicom-ct.bin", 1, ct);
    seed("nifti-gz-ct.bin", 2, read_bytes(first_file(synth / "ct", ".nii.gz")));
    seed("nifti-mri.bin", 3, gunzip(first_file(synth / "mri", ".nii.gz")));
    seed("png-grey-as-xray.bin", 4, png);
    seed("png-grey-as-endoscopy.bin", 5, png);
    seed("mp4-endoscopy-clip.bin", 6, mp4);
    seed("mp4-as-avi-stored-frames.bin", 7, mp4);
    stdfs::remove_all(synth);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const Format& f = kFormats[data[0] % kNumFormats];
  // A folder per format, so that a DICOM folder holds only the input.
  const std::string folder = std::string(f.extension + 1) + "-" + f.modality;
  const stdfs::path path =
      m3ret::fuzz::write_input(folder + "/input" + f.extension, data + 1, size - 1);
  m3ret::data::ManifestRow row;
  row.path = path;
  row.modality = f.modality;
  row.split = "train";
  m3ret::fuzz::refuse_only_with_error(
      [&] { (void)m3ret::data::read_sample(row, path.parent_path(), preprocess(f)); });
  if (std::string(f.extension) == ".dcm") {
    m3ret::fuzz::refuse_only_with_error(
        [&] { (void)m3ret::data::dicom::list_series(path.parent_path(), listing_limits()); });
  }
  return 0;
}
