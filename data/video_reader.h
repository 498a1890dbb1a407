// Video decoding through FFmpeg (internal to data/).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/preprocess.h"

namespace m3ret::data::video {

// True when the extension names a video container (.mp4 .m4v .mov .avi .mkv
// .webm .mpg .mpeg .ogv), case-insensitive.
bool is_video_path(const std::filesystem::path& path);

// Lowers FFmpeg's process-wide log level to errors (once; idempotent), so that
// decoders and encoders do not print banners and statistics. read() and
// video::write() call it.
void quiet_ffmpeg_logs();

// FFmpeg's message for an error code (av_strerror), for the reader's and writer's errors.
std::string av_error(int err);

// Decodes `path` (any container/codec libavformat/libavcodec handle) and
// samples `frames` frames uniformly in time over the clip: output i shows the
// frame on screen at t_i = start + (i + 0.5) * (end - start) / frames, where
// [start, end) is the span of the packets' presentation times (the last frame
// lasting its packet duration, else the gap before it). For a constant frame
// rate this is frame floor((i + 0.5) * N / frames); variable frame rates are
// sampled by time, not by frame count; short clips repeat frames. Without
// timestamps, frames are sampled by index (N counted by decoding).
// Each frame is converted to RGB by libswscale (area filter, display aspect
// from the sample aspect ratio kept; odd sizes allowed) and fitted into
// size x size: the whole frame with black bars (crop = false) or the centred
// square (crop = true). Returns uint8 [3, frames, size, size]. Throws
// m3ret::InputError(path, reason) for a missing, empty, corrupt or truncated
// file, no video stream, a decode error or no decodable frame.
// Thread-safe (no shared state).
// Size limits (preprocess.max_input_pixels, preprocess.max_video_frames):
// a stream whose frames are larger than max_pixels, or that declares (or whose
// packets count, before any decoding) more than max_frames frames, is refused.
struct Limits {
  int64_t max_pixels = kDefaultMaxInputPixels;
  int64_t max_frames = kDefaultMaxVideoFrames;
};
std::vector<uint8_t> read(const std::filesystem::path& path, int64_t frames, int64_t size,
                          bool crop, const Limits& limits = {});

}  // namespace m3ret::data::video
