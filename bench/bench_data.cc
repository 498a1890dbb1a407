// Data benchmark: decode + preprocess samples/s per modality and reader, on
// one thread, against the decoding library alone (ITK ImageFileReader, a
// plain libavcodec decode loop) on the same files.
//
//   bench_data [--dir DIR] [--seconds S] [--patients N] [--fork-server on|off]
//
// Generates the synthetic dataset (data/synth.h, default sizes) into
// DIR/synth when missing, and one clinical-size file per modality with a
// size that differs most from the synthetic one (CT 512^2 x 96, X-ray 2048^2
// DICOM, endoscopy 720x576 x 50 frames) into DIR/clinical, then for each
// modality times:
//   m3ret         data::read_sample (integrity checks, decode, preprocessing to
//                 the unified sample with the default [preprocess] settings)
//   m3ret decode  images/volumes: data::itkio::read alone (integrity checks +
//                 ITK decode into float channels, no preprocessing)
//   library       the library's own decode of the same file, nothing else
// DICOM is decoded in a child (data/isolate.h), forked by the fork server as in m3ret
// (--fork-server on, the default) or by this process (off: what a process without one does).
// Prints one table (markdown) to stdout. See docs/performance.md.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <itkImage.h>
#include <itkGDCMImageIO.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkMetaDataObject.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
}

#include "core/fork_server.h"
#include "data/itk_image.h"
#include "data/manifest.h"
#include "data/reader.h"
#include "data/synth.h"
#include "data/video_reader.h"
#include "data/video_writer.h"

namespace {

namespace stdfs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace m3ret;

// Calls fn(i) over i = 0, 1, ... (cycling over n items) for at least `seconds`
// and at least n calls; returns calls per second.
template <class Fn>
double rate(int64_t n, double seconds, Fn fn) {
  const auto start = Clock::now();
  int64_t calls = 0;
  double elapsed = 0;
  while (calls < n || elapsed < seconds) {
    fn(calls % n);
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  }
  return calls / elapsed;
}

// The library alone: ITK's reader (its own IO factory choice) into float.
void itk_decode(const stdfs::path& path) {
  data::itkio::register_factories();
  auto r = itk::ImageFileReader<itk::Image<float, 3>>::New();
  r->SetFileName(path.string());
  r->Update();
}

// The library alone: every frame of the best video stream through libavcodec
// (one thread), no conversion. Returns the number of frames.
int64_t av_decode(const stdfs::path& path) {
  AVFormatContext* fmt = nullptr;
  if (avformat_open_input(&fmt, path.c_str(), nullptr, nullptr) < 0) std::abort();
  avformat_find_stream_info(fmt, nullptr);
  const AVCodec* codec = nullptr;
  const int stream = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  AVCodecContext* dec = avcodec_alloc_context3(codec);
  avcodec_parameters_to_context(dec, fmt->streams[stream]->codecpar);
  dec->thread_count = 1;
  avcodec_open2(dec, codec, nullptr);
  AVPacket* pkt = av_packet_alloc();
  AVFrame* frame = av_frame_alloc();
  int64_t frames = 0;
  auto drain = [&] {
    while (avcodec_receive_frame(dec, frame) == 0) ++frames;
  };
  while (av_read_frame(fmt, pkt) >= 0) {
    if (pkt->stream_index == stream) avcodec_send_packet(dec, pkt);
    av_packet_unref(pkt);
    drain();
  }
  avcodec_send_packet(dec, nullptr);
  drain();
  av_frame_free(&frame);
  av_packet_free(&pkt);
  avcodec_free_context(&dec);
  avformat_close_input(&fmt);
  return frames;
}

// Writes an ITK image to `path` (format from the extension), DICOM with a Modality tag.
template <class Image>
void write_itk(const typename Image::Pointer& img, const stdfs::path& path) {
  data::itkio::register_factories();
  auto w = itk::ImageFileWriter<Image>::New();
  w->SetInput(img);
  w->SetFileName(path.string());
  w->UseCompressionOn();
  w->Update();
}

// Clinical-size inputs (one file each, smooth content + noise, so that codecs
// and deflate work as on real data): a 512 x 512 x 96 CT (.nii.gz, int16 HU,
// 0.7 x 0.7 x 2.5 mm), a 2048 x 2048 uint16 X-ray (.dcm), a 720 x 576 x 50
// endoscopy clip (.mp4, the default codec). Returns manifest rows.
std::vector<data::ManifestRow> write_clinical(const stdfs::path& dir) {
  stdfs::create_directories(dir);
  std::vector<data::ManifestRow> rows;
  uint32_t seed = 12345;
  auto noise = [&] {
    seed = seed * 1664525u + 1013904223u;
    return static_cast<int>(seed >> 27);  // 0..31
  };
  {
    using Image = itk::Image<int16_t, 3>;
    auto img = Image::New();
    img->SetRegions(Image::SizeType{{512, 512, 96}});
    Image::SpacingType sp;
    sp[0] = sp[1] = 0.7;
    sp[2] = 2.5;
    img->SetSpacing(sp);
    img->Allocate();
    int16_t* p = img->GetBufferPointer();
    for (int z = 0; z < 96; ++z)
      for (int y = 0; y < 512; ++y)
        for (int x = 0; x < 512; ++x) {
          const double r = std::hypot((x - 256) / 230.0, (y - 256) / 180.0);
          const double lung = std::hypot((std::abs(x - 256) - 110) / 70.0, (y - 250) / 110.0);
          const int hu = r > 1 ? -1000 : lung < 1 ? -850 : 40;
          *p++ = static_cast<int16_t>(hu + noise() - 16);
        }
    write_itk<Image>(img, dir / "ct-512.nii.gz");
    data::ManifestRow r;
    r.path = dir / "ct-512.nii.gz";
    r.modality = "ct";
    rows.push_back(r);
  }
  {
    using Image = itk::Image<uint16_t, 2>;
    auto img = Image::New();
    img->SetRegions(Image::SizeType{{2048, 2048}});
    img->Allocate();
    uint16_t* p = img->GetBufferPointer();
    for (int y = 0; y < 2048; ++y)
      for (int x = 0; x < 2048; ++x) {
        const double r = std::hypot((x - 1024) / 900.0, (y - 1024) / 1000.0);
        *p++ = static_cast<uint16_t>((r > 1 ? 300 : 2500 - 1200 * r * r) + 4 * noise());
      }
    itk::EncapsulateMetaData<std::string>(img->GetMetaDataDictionary(), "0008|0060", "DX");
    auto w = itk::ImageFileWriter<Image>::New();
    data::itkio::register_factories();
    w->SetInput(img);
    w->SetFileName((dir / "xray-2048.dcm").string());
    w->SetImageIO(itk::GDCMImageIO::New());
    w->Update();
    data::ManifestRow r;
    r.path = dir / "xray-2048.dcm";
    r.modality = "xray";
    rows.push_back(r);
  }
  {
    const int64_t frames = 50, h = 576, w = 720;
    std::vector<uint8_t> rgb(static_cast<size_t>(frames * h * w * 3));
    size_t i = 0;
    for (int64_t t = 0; t < frames; ++t)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          const double v = 0.5 + 0.5 * std::sin((x + 4 * t) / 40.0) * std::cos((y - 2 * t) / 55.0);
          rgb[i++] = static_cast<uint8_t>(120 + 100 * v + noise() / 4);
          rgb[i++] = static_cast<uint8_t>(50 + 60 * v + noise() / 4);
          rgb[i++] = static_cast<uint8_t>(40 + 40 * v + noise() / 4);
        }
    data::video::write(dir / "endo-720x576.mp4", rgb, frames, h, w, 25);
    data::ManifestRow r;
    r.path = dir / "endo-720x576.mp4";
    r.modality = "endoscopy";
    rows.push_back(r);
  }
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  bool server = true;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--fork-server") server = std::string(argv[i + 1]) != "off";
  }
  if (server) m3ret::fork_server::start();  // before any thread, as m3ret does
  stdfs::path dir = "/tmp/m3ret-bench-data";
  double seconds = 3.0;
  int64_t patients = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--dir")
      dir = argv[i + 1];
    else if (a == "--seconds")
      seconds = std::atof(argv[i + 1]);
    else if (a == "--patients")
      patients = std::atoll(argv[i + 1]);
    else if (a != "--fork-server") {
      std::fprintf(stderr,
                   "usage: bench_data [--dir DIR] [--seconds S] [--patients N] "
                   "[--fork-server on|off]\n");
      return 2;
    }
  }
  data::video::quiet_ffmpeg_logs();
  const stdfs::path synth_dir = dir / "synth";
  data::SynthConfig sc;  // default sizes: 96^2 images, 48^2 x 32 volumes, 16-frame 96x80 videos
  sc.patients_per_class = patients;
  if (!stdfs::exists(synth_dir / "manifest.csv")) data::synthesize(sc, synth_dir);
  const auto rows = data::read_manifest(synth_dir / "manifest.csv");
  std::map<std::string, std::vector<data::ManifestRow>> by_modality;
  for (const auto& r : rows) by_modality[r.modality].push_back(r);

  const stdfs::path clinical_dir = dir / "clinical";
  for (auto& r : write_clinical(clinical_dir)) {
    by_modality[r.modality + " (clinical size)"].push_back(r);
  }

  const data::PreprocessConfig pp;  // defaults: S = 64, F = 8, V = 64, D = 16
  std::printf(
      "| modality | reader | files | m3ret samples/s | m3ret decode step, files/s | "
      "library decode only, files/s | m3ret / library |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const auto& [modality, list] : by_modality) {
    const int64_t n = static_cast<int64_t>(list.size());
    const double ours = rate(
        n, seconds, [&](int64_t i) { data::read_sample(list[i], list[i].path.parent_path(), pp); });
    const bool is_video = data::video::is_video_path(list[0].path);
    const double lib = rate(n, seconds, [&](int64_t i) {
      if (is_video)
        av_decode(list[i].path);
      else
        itk_decode(list[i].path);
    });
    std::string decode_step = "-";  // video: decoding is not separable from sampling
    if (!is_video) {
      decode_step =
          std::to_string(rate(n, seconds, [&](int64_t i) { data::itkio::read(list[i].path); }));
      decode_step = decode_step.substr(0, decode_step.find('.') + 2);
    }
    const std::string ext = list[0].path.extension().string();
    const char* reader = is_video        ? "FFmpeg (libavcodec)"
                         : ext == ".dcm" ? "ITK + GDCM"
                         : ext == ".png" ? "ITK PNG"
                                         : "ITK NIfTI";
    std::printf("| %s | %s %s | %lld | %.1f | %s | %.1f | %.2f |\n", modality.c_str(), reader,
                ext.c_str(), static_cast<long long>(n), ours, decode_step.c_str(), lib, ours / lib);
    std::fflush(stdout);
  }
  return 0;
}
