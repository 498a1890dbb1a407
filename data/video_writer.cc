#include "data/video_writer.h"

#include <algorithm>
#include <atomic>
#include <memory>

#include <unistd.h>

#include <fmt/format.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include "core/error.h"
#include "core/fs.h"
#include "data/video_reader.h"

namespace m3ret::data::video {

namespace stdfs = std::filesystem;

namespace {

std::atomic<int> g_tmp_counter{0};

// Owns every FFmpeg object of one encoding.
struct Encoder {
  AVFormatContext* oc = nullptr;
  AVCodecContext* enc = nullptr;
  AVFrame* frame = nullptr;
  AVPacket* pkt = nullptr;
  SwsContext* sws = nullptr;
  bool io_open = false;
  ~Encoder() {
    if (io_open) avio_closep(&oc->pb);
    sws_freeContext(sws);
    av_packet_free(&pkt);
    av_frame_free(&frame);
    avcodec_free_context(&enc);
    avformat_free_context(oc);
  }
};

}  // namespace

std::string default_codec() {
  return avcodec_find_encoder_by_name("libx264") ? "libx264" : "mpeg4";
}

namespace {

// yuv420p for even sizes; else the first format without chroma subsampling
// that the encoder takes.
AVPixelFormat pick_format(const AVCodec* codec, int64_t width, int64_t height) {
  const bool even = width % 2 == 0 && height % 2 == 0;
  std::vector<AVPixelFormat> wanted;
  if (even) wanted = {codec->id == AV_CODEC_ID_MJPEG ? AV_PIX_FMT_YUVJ420P : AV_PIX_FMT_YUV420P};
  for (auto f : {AV_PIX_FMT_YUV444P, AV_PIX_FMT_YUVJ444P, AV_PIX_FMT_RGB24, AV_PIX_FMT_BGR0,
                 AV_PIX_FMT_GBRP}) {
    wanted.push_back(f);
  }
  if (!codec->pix_fmts) return wanted.front();
  for (auto w : wanted) {
    for (const AVPixelFormat* f = codec->pix_fmts; *f != AV_PIX_FMT_NONE; ++f) {
      if (*f == w) return w;
    }
  }
  return AV_PIX_FMT_NONE;
}

}  // namespace

void write(const stdfs::path& path, const std::vector<uint8_t>& rgb, int64_t frames, int64_t height,
           int64_t width, int fps, const std::string& codec) {
  WriteOptions o;
  o.fps = fps;
  o.codec = codec;
  write(path, rgb, frames, height, width, o);
}

void write(const stdfs::path& path, const std::vector<uint8_t>& rgb, int64_t frames, int64_t height,
           int64_t width, const WriteOptions& options) {
  const int fps = options.fps;
  const std::string& codec_name = options.codec;
  const bool vfr = !options.pts_ms.empty();
  // Keep the extension so that libavformat picks the container from it.
  const stdfs::path tmp =
      path.parent_path() /
      fmt::format(".tmp-{}-{}-{}", ::getpid(), g_tmp_counter++, path.filename().string());
  auto fail = [&](const std::string& why) {
    std::error_code ec;
    stdfs::remove(tmp, ec);
    throw Error(fmt::format("cannot write video {}: {}", path.string(), why));
  };
  if (frames < 1 || width < 1 || height < 1 || fps < 1) {
    fail(fmt::format("bad shape {} x {} x {} at {} fps", frames, height, width, fps));
  }
  if (vfr && static_cast<int64_t>(options.pts_ms.size()) != frames)
    fail("pts_ms needs one time per frame");
  for (size_t i = 1; i < options.pts_ms.size(); ++i) {
    if (options.pts_ms[i] <= options.pts_ms[i - 1]) fail("pts_ms must increase");
  }
  if (static_cast<int64_t>(rgb.size()) != frames * height * width * 3)
    fail("pixel buffer size mismatch");
  quiet_ffmpeg_logs();
  const std::string name = codec_name.empty() ? default_codec() : codec_name;
  const AVCodec* codec = avcodec_find_encoder_by_name(name.c_str());
  if (!codec) fail(fmt::format("FFmpeg has no '{}' encoder", name));

  if (path.has_parent_path()) stdfs::create_directories(path.parent_path());
  Encoder e;
  int err = avformat_alloc_output_context2(&e.oc, nullptr, nullptr, tmp.c_str());
  if (err < 0 || !e.oc) fail("unknown container for this extension: " + av_error(err));
  e.enc = avcodec_alloc_context3(codec);
  e.enc->width = static_cast<int>(width);
  e.enc->height = static_cast<int>(height);
  e.enc->time_base = vfr ? AVRational{1, 1000} : AVRational{1, fps};
  if (!vfr) e.enc->framerate = AVRational{fps, 1};
  if (vfr) e.enc->max_b_frames = 0;  // packets leave in presentation order: durations below
  e.enc->pix_fmt = pick_format(codec, width, height);
  if (e.enc->pix_fmt == AV_PIX_FMT_NONE) {
    fail(fmt::format("encoder {} takes no pixel format for a {} x {} frame", name, width, height));
  }
  e.enc->gop_size = 8;
  e.enc->thread_count = 1;
  if (name == "libx264") {
    av_opt_set(e.enc->priv_data, "preset", "veryfast", 0);
    // A constant quantiser, not CRF: with CRF, libx264's macroblock-tree rate
    // control gave different bytes for the same frames depending on what the
    // process had encoded before (measured: 5-10 of 60 videos differed between
    // two orders of encoding), which made `m3ret synth` irreproducible.
    av_opt_set(e.enc->priv_data, "qp", "18", 0);
  } else {
    e.enc->flags |= AV_CODEC_FLAG_QSCALE;
    e.enc->global_quality = FF_QP2LAMBDA * 3;
    e.enc->bit_rate = 4000000;
  }
  if (e.oc->oformat->flags & AVFMT_GLOBALHEADER) e.enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  err = avcodec_open2(e.enc, codec, nullptr);
  if (err < 0) fail(fmt::format("cannot open encoder {}: {}", name, av_error(err)));
  AVStream* st = avformat_new_stream(e.oc, nullptr);
  if (!st) fail("cannot add a stream");
  st->time_base = e.enc->time_base;
  avcodec_parameters_from_context(st->codecpar, e.enc);
  err = avio_open(&e.oc->pb, tmp.c_str(), AVIO_FLAG_WRITE);
  if (err < 0) fail("cannot open for writing: " + av_error(err));
  e.io_open = true;
  err = avformat_write_header(e.oc, nullptr);
  if (err < 0) fail(fmt::format("container does not accept {}: {}", name, av_error(err)));

  e.frame = av_frame_alloc();
  e.frame->format = e.enc->pix_fmt;
  e.frame->width = e.enc->width;
  e.frame->height = e.enc->height;
  if (av_frame_get_buffer(e.frame, 0) < 0) fail("out of memory");
  e.pkt = av_packet_alloc();
  e.sws = sws_getContext(e.enc->width, e.enc->height, AV_PIX_FMT_RGB24, e.enc->width, e.enc->height,
                         e.enc->pix_fmt, SWS_BICUBIC, nullptr, nullptr, nullptr);
  if (!e.sws) fail("swscale cannot convert RGB to the encoder's format");

  auto drain = [&]() {
    for (;;) {
      int r = avcodec_receive_packet(e.enc, e.pkt);
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
      if (r < 0) fail("encode error: " + av_error(r));
      // Every frame lasts one tick: without a duration, MP4's edit list ends
      // before the last frame and demuxers drop it.
      if (e.pkt->duration <= 0) e.pkt->duration = 1;
      if (vfr) {  // until the next frame (the last one: as long as the one before)
        const auto& pts = options.pts_ms;
        auto it = std::upper_bound(pts.begin(), pts.end(), e.pkt->pts);
        if (it != pts.end())
          e.pkt->duration = *it - e.pkt->pts;
        else if (pts.size() >= 2)
          e.pkt->duration = pts.back() - pts[pts.size() - 2];
      }
      av_packet_rescale_ts(e.pkt, e.enc->time_base, st->time_base);
      e.pkt->stream_index = st->index;
      r = av_interleaved_write_frame(e.oc, e.pkt);
      if (r < 0) fail("write error: " + av_error(r));
    }
  };
  const size_t frame_bytes = static_cast<size_t>(width * height * 3);
  // swscale's SIMD paths read a few bytes past the last row: convert from a padded copy.
  std::vector<uint8_t> padded(frame_bytes + AV_INPUT_BUFFER_PADDING_SIZE, 0);
  for (int64_t t = 0; t < frames; ++t) {
    if (av_frame_make_writable(e.frame) < 0) fail("frame not writable");
    std::copy_n(rgb.begin() + static_cast<std::ptrdiff_t>(t * frame_bytes), frame_bytes,
                padded.begin());
    const uint8_t* src[4] = {padded.data(), nullptr, nullptr, nullptr};
    const int src_stride[4] = {static_cast<int>(width * 3), 0, 0, 0};
    sws_scale(e.sws, src, src_stride, 0, e.enc->height, e.frame->data, e.frame->linesize);
    e.frame->pts = vfr ? options.pts_ms[t] : t;
    int r = avcodec_send_frame(e.enc, e.frame);
    if (r < 0) fail("encode error: " + av_error(r));
    drain();
  }
  avcodec_send_frame(e.enc, nullptr);
  drain();
  err = av_write_trailer(e.oc);
  if (err < 0) fail("cannot write trailer: " + av_error(err));
  avio_closep(&e.oc->pb);
  e.io_open = false;
  fs::commit(tmp, path);
}

}  // namespace m3ret::data::video
