#include "data/video_writer.h"

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

std::string av_error(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(err, buf, sizeof(buf));
  return buf;
}

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

void write(const stdfs::path& path, const std::vector<uint8_t>& rgb, int64_t frames, int64_t height,
           int64_t width, int fps, const std::string& codec_name) {
  // Keep the extension so that libavformat picks the container from it.
  const stdfs::path tmp = path.parent_path() / fmt::format(".tmp-{}-{}-{}", ::getpid(), g_tmp_counter++,
                                                           path.filename().string());
  auto fail = [&](const std::string& why) {
    std::error_code ec;
    stdfs::remove(tmp, ec);
    throw Error(fmt::format("cannot write video {}: {}", path.string(), why));
  };
  if (frames < 1 || width % 2 || height % 2 || width < 2 || height < 2) {
    fail(fmt::format("bad shape {} x {} x {} (frames >= 1, even sizes)", frames, height, width));
  }
  if (static_cast<int64_t>(rgb.size()) != frames * height * width * 3) fail("pixel buffer size mismatch");
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
  e.enc->time_base = AVRational{1, fps};
  e.enc->framerate = AVRational{fps, 1};
  e.enc->pix_fmt = codec->id == AV_CODEC_ID_MJPEG ? AV_PIX_FMT_YUVJ420P : AV_PIX_FMT_YUV420P;
  e.enc->gop_size = 8;
  e.enc->thread_count = 1;
  if (name == "libx264") {
    av_opt_set(e.enc->priv_data, "preset", "veryfast", 0);
    av_opt_set(e.enc->priv_data, "crf", "18", 0);
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
      av_packet_rescale_ts(e.pkt, e.enc->time_base, st->time_base);
      e.pkt->stream_index = st->index;
      r = av_interleaved_write_frame(e.oc, e.pkt);
      if (r < 0) fail("write error: " + av_error(r));
    }
  };
  const size_t frame_bytes = static_cast<size_t>(width * height * 3);
  for (int64_t t = 0; t < frames; ++t) {
    if (av_frame_make_writable(e.frame) < 0) fail("frame not writable");
    const uint8_t* src[4] = {rgb.data() + t * frame_bytes, nullptr, nullptr, nullptr};
    const int src_stride[4] = {static_cast<int>(width * 3), 0, 0, 0};
    sws_scale(e.sws, src, src_stride, 0, e.enc->height, e.frame->data, e.frame->linesize);
    e.frame->pts = t;
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
