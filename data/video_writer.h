// Video encoding through FFmpeg (used by the synthetic dataset and tests).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace m3ret::data::video {

struct WriteOptions {
  int fps = 10;       // constant frame rate (when pts_ms is empty)
  std::string codec;  // encoder name ("libx264", "mpeg4", "mjpeg", "libvpx", "ffv1", ...);
                      // "" = default_codec()
  std::vector<int64_t> pts_ms;  // per-frame presentation times in ms, increasing (variable
                                // frame rate); empty = 1/fps apart
};

// Encodes `frames` RGB frames, uint8 [frames, height, width, 3] (interleaved),
// into `path`; the container follows the extension (.mp4, .mkv, .avi, .mov,
// .webm). The pixel format is yuv420p (yuvj420p for mjpeg) for even sizes;
// odd sizes use a format without chroma subsampling that the encoder takes
// (yuv444p, yuvj444p, rgb24, bgr0 or gbrp). Written to a temporary sibling
// and renamed, so `path` never holds a partial file. Throws m3ret::Error
// naming the path (e.g. an encoder that takes no suitable pixel format).
// Thread-safe. The same frames give the same bytes whatever the process
// encoded before (libx264 runs at a constant quantiser).
void write(const std::filesystem::path& path, const std::vector<uint8_t>& rgb, int64_t frames,
           int64_t height, int64_t width, const WriteOptions& options);

// The same with a constant frame rate.
void write(const std::filesystem::path& path, const std::vector<uint8_t>& rgb, int64_t frames,
           int64_t height, int64_t width, int fps = 10, const std::string& codec = "");

// The encoder that write() picks for codec = "".
std::string default_codec();

}  // namespace m3ret::data::video
