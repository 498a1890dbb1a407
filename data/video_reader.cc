#include "data/video_reader.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <fmt/format.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}

#include "core/error.h"
#include "data/integrity.h"

namespace m3ret::data::video {

namespace stdfs = std::filesystem;

std::string av_error(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(err, buf, sizeof(buf));
  return buf;
}

namespace {

struct FormatCloser {
  void operator()(AVFormatContext* c) const { avformat_close_input(&c); }
};
struct CodecFreer {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct FrameFreer {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct PacketFreer {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};

std::string too_many_frames(int64_t frames, int64_t max_frames) {
  return fmt::format(
      "{} frames or more, more than preprocess.max_video_frames = {} (refused before decoding)",
      frames, max_frames);
}

// Opens `path` and finds its best video stream (and decoder); refuses frames
// larger than limits.max_pixels and a declared frame count over limits.max_frames.
std::unique_ptr<AVFormatContext, FormatCloser> open_video(const stdfs::path& path,
                                                          const Limits& limits, int* stream,
                                                          const AVCodec** codec) {
  auto refuse = [&](const std::string& why) { throw InputError(path.string(), why); };
  AVFormatContext* raw = nullptr;
  int err = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
  if (err < 0) refuse("cannot open video: " + av_error(err));
  std::unique_ptr<AVFormatContext, FormatCloser> fmt_ctx(raw);
  err = avformat_find_stream_info(fmt_ctx.get(), nullptr);
  if (err < 0) refuse("cannot read stream info: " + av_error(err));
  *stream = av_find_best_stream(fmt_ctx.get(), AVMEDIA_TYPE_VIDEO, -1, -1, codec, 0);
  if (*stream < 0 || !*codec) refuse("no decodable video stream");
  const AVStream* st = fmt_ctx->streams[*stream];
  const std::string big =
      integrity::too_many_pixels({st->codecpar->width, st->codecpar->height}, limits.max_pixels);
  if (!big.empty()) refuse(big);
  if (st->nb_frames > limits.max_frames) refuse(too_many_frames(st->nb_frames, limits.max_frames));
  return fmt_ctx;
}

// The presentation time span of the video stream, from its packets (no decoding).
struct Timeline {
  bool timed = false;   // every packet has a timestamp
  int64_t start = 0;    // first presentation time (stream time base)
  int64_t end = 0;      // last presentation time + its duration
  int64_t packets = 0;  // video packets (not discarded)
};

Timeline scan_timeline(const stdfs::path& path, const Limits& limits) {
  int stream = -1;
  const AVCodec* codec = nullptr;
  auto fmt_ctx = open_video(path, limits, &stream, &codec);
  std::unique_ptr<AVPacket, PacketFreer> pkt(av_packet_alloc());
  Timeline tl;
  tl.timed = true;
  std::vector<std::pair<int64_t, int64_t>> stamps;  // (timestamp, duration)
  for (;;) {
    const int err = av_read_frame(fmt_ctx.get(), pkt.get());
    if (err == AVERROR_EOF) break;
    if (err < 0)
      throw InputError(path.string(), "cannot read packet (truncated?): " + av_error(err));
    if (pkt->stream_index == stream && !(pkt->flags & AV_PKT_FLAG_DISCARD)) {
      if (++tl.packets > limits.max_frames) {
        throw InputError(path.string(), too_many_frames(tl.packets, limits.max_frames));
      }
      const int64_t ts = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
      if (ts == AV_NOPTS_VALUE)
        tl.timed = false;
      else
        stamps.emplace_back(ts, pkt->duration);
    }
    av_packet_unref(pkt.get());
  }
  if (!tl.timed || stamps.empty()) {
    tl.timed = false;
    return tl;
  }
  std::sort(stamps.begin(), stamps.end());
  tl.start = stamps.front().first;
  // The last frame lasts its packet's duration, else as long as the frame before it.
  int64_t last = stamps.back().second;
  if (last <= 0 && stamps.size() >= 2) last = stamps.back().first - stamps[stamps.size() - 2].first;
  tl.end = stamps.back().first + std::max<int64_t>(last, 1);
  return tl;
}

// Decodes every frame of the best video stream in presentation order,
// calling on_frame(frame, index). Returns the number of decoded frames.
int64_t decode_all(const stdfs::path& path, const Limits& limits,
                   const std::function<void(const AVFrame*, int64_t)>& on_frame) {
  auto refuse = [&](const std::string& why) { throw InputError(path.string(), why); };
  int stream = -1;
  const AVCodec* codec = nullptr;
  auto fmt_ctx = open_video(path, limits, &stream, &codec);
  AVStream* st = fmt_ctx->streams[stream];
  int err = 0;
  std::unique_ptr<AVCodecContext, CodecFreer> dec(avcodec_alloc_context3(codec));
  if (!dec) refuse("out of memory for the decoder");
  err = avcodec_parameters_to_context(dec.get(), st->codecpar);
  if (err < 0) refuse("bad codec parameters: " + av_error(err));
  dec->thread_count = 1;  // callers parallelise across samples
  err = avcodec_open2(dec.get(), codec, nullptr);
  if (err < 0) refuse(fmt::format("cannot open {} decoder: {}", codec->name, av_error(err)));

  std::unique_ptr<AVPacket, PacketFreer> pkt(av_packet_alloc());
  std::unique_ptr<AVFrame, FrameFreer> frame(av_frame_alloc());
  int64_t count = 0;
  auto drain = [&]() {
    for (;;) {
      int r = avcodec_receive_frame(dec.get(), frame.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
      if (r < 0) refuse("decode error: " + av_error(r));
      if (frame->decode_error_flags != 0) refuse("corrupt frame in the stream");
      const std::string big =
          integrity::too_many_pixels({frame->width, frame->height}, limits.max_pixels);
      if (!big.empty()) refuse(big);
      on_frame(frame.get(), count++);
      av_frame_unref(frame.get());
    }
  };
  for (;;) {
    err = av_read_frame(fmt_ctx.get(), pkt.get());
    if (err == AVERROR_EOF) break;
    if (err < 0) refuse("cannot read packet (truncated?): " + av_error(err));
    if (pkt->stream_index == stream) {
      int r = avcodec_send_packet(dec.get(), pkt.get());
      av_packet_unref(pkt.get());
      if (r < 0 && r != AVERROR(EAGAIN)) refuse("decode error: " + av_error(r));
      drain();
    } else {
      av_packet_unref(pkt.get());
    }
  }
  avcodec_send_packet(dec.get(), nullptr);  // flush
  drain();
  return count;
}

// Converts `f` to RGB and fits it into the size x size planes of output frame t.
void put_frame(const AVFrame* f, int64_t size, bool crop, SwsContext** sws,
               std::vector<uint8_t>& rgb, uint8_t* out, int64_t frames, int64_t t) {
  double sar = 1.0;
  if (f->sample_aspect_ratio.num > 0 && f->sample_aspect_ratio.den > 0) {
    sar = av_q2d(f->sample_aspect_ratio);
  }
  const double dw = f->width * sar, dh = f->height;
  const double scale = crop ? size / std::min(dw, dh) : size / std::max(dw, dh);
  const int w = std::max(1, static_cast<int>(std::lround(dw * scale)));
  const int h = std::max(1, static_cast<int>(std::lround(dh * scale)));
  *sws = sws_getCachedContext(*sws, f->width, f->height, static_cast<AVPixelFormat>(f->format), w,
                              h, AV_PIX_FMT_RGB24, SWS_AREA, nullptr, nullptr, nullptr);
  if (!*sws) throw Error("swscale: cannot convert this pixel format to RGB");
  // swscale's SIMD paths write a few bytes past the last row: room for them.
  rgb.assign(static_cast<size_t>(w) * h * 3 + AV_INPUT_BUFFER_PADDING_SIZE, 0);
  uint8_t* dst[4] = {rgb.data(), nullptr, nullptr, nullptr};
  int dst_stride[4] = {w * 3, 0, 0, 0};
  sws_scale(*sws, f->data, f->linesize, 0, f->height, dst, dst_stride);
  // Centre (w, h) on (size, size): offsets may be negative (crop) or positive (pad).
  const int64_t ox = (size - w) / 2, oy = (size - h) / 2;
  const int64_t plane = size * size;
  for (int64_t y = 0; y < size; ++y) {
    const int64_t sy = y - oy;
    if (sy < 0 || sy >= h) continue;
    for (int64_t x = 0; x < size; ++x) {
      const int64_t sx = x - ox;
      if (sx < 0 || sx >= w) continue;
      const uint8_t* px = &rgb[(sy * w + sx) * 3];
      for (int c = 0; c < 3; ++c) out[(c * frames + t) * plane + y * size + x] = px[c];
    }
  }
}

}  // namespace

void quiet_ffmpeg_logs() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_level(AV_LOG_ERROR); });
}

std::vector<uint8_t> read(const stdfs::path& path, int64_t frames, int64_t size, bool crop,
                          const Limits& limits) {
  quiet_ffmpeg_logs();
  std::error_code ec;
  const std::string why = integrity::not_a_regular_file(path);  // a FIFO would block FFmpeg
  if (!why.empty()) throw InputError(path.string(), why);
  if (stdfs::file_size(path, ec) == 0) throw InputError(path.string(), "empty file");

  std::vector<uint8_t> out(static_cast<size_t>(3 * frames * size * size), 0);
  std::vector<uint8_t> rgb;
  SwsContext* sws = nullptr;
  std::unique_ptr<SwsContext*, void (*)(SwsContext**)> sws_guard(
      &sws, [](SwsContext** s) { sws_freeContext(*s); });
  const Timeline tl = scan_timeline(path, limits);

  if (tl.timed) {
    // Output i shows the frame on screen at t_i = start + (i + 0.5) * (end - start) / frames:
    // the last frame whose timestamp is <= t_i (the first frame for earlier t_i).
    std::unique_ptr<AVFrame, FrameFreer> prev(av_frame_alloc());
    bool have_prev = false, untimed = false;
    int64_t next = 0;
    auto target = [&](int64_t i) {
      return tl.start + (i + 0.5) * double(tl.end - tl.start) / frames;
    };
    auto on_frame = [&](const AVFrame* f, int64_t) {
      if (f->best_effort_timestamp == AV_NOPTS_VALUE) untimed = true;
      if (untimed) return;
      const double ts = static_cast<double>(f->best_effort_timestamp);
      while (next < frames && target(next) < ts) {
        put_frame(have_prev ? prev.get() : f, size, crop, &sws, rgb, out.data(), frames, next++);
      }
      av_frame_unref(prev.get());
      if (av_frame_ref(prev.get(), f) < 0) throw Error("out of memory for a video frame");
      have_prev = true;
    };
    const int64_t decoded = decode_all(path, limits, on_frame);
    if (decoded == 0) throw InputError(path.string(), "no decodable video frames");
    if (!untimed) {
      while (next < frames)
        put_frame(prev.get(), size, crop, &sws, rgb, out.data(), frames, next++);
      return out;
    }
    std::fill(out.begin(), out.end(), 0);
  }

  // No usable timestamps: sample by frame index, k_i = floor((i + 0.5) * N / frames),
  // N from the packet count, and again with the decoded count when they differ.
  int64_t n = tl.packets;
  for (int pass = 0; pass < 2; ++pass) {
    int64_t filled = 0;
    auto on_frame = [&](const AVFrame* f, int64_t k) {
      for (int64_t t = 0; t < frames; ++t) {
        if (static_cast<int64_t>(std::floor((t + 0.5) * n / frames)) == k) {
          put_frame(f, size, crop, &sws, rgb, out.data(), frames, t);
          ++filled;
        }
      }
    };
    const int64_t decoded = decode_all(path, limits, on_frame);
    if (decoded == 0) throw InputError(path.string(), "no decodable video frames");
    if (decoded == n && filled == frames) return out;
    n = decoded;
    std::fill(out.begin(), out.end(), 0);
  }
  throw InputError(path.string(), "frame count changed between decoding passes");
}

}  // namespace m3ret::data::video
