// Video encoding through FFmpeg (used by the synthetic dataset and tests).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace m3ret::data::video {

// Encodes `frames` RGB frames, uint8 [frames, height, width, 3] (interleaved),
// into `path`; the container follows the extension (.mp4, .mkv, .avi, .mov,
// .webm). `codec` is an encoder name ("libx264", "mpeg4", "mjpeg", ...); ""
// chooses libx264 when this FFmpeg has it, else mpeg4. width and height must
// be even (yuv420p). Written to a temporary sibling and renamed, so `path`
// never holds a partial file. Throws m3ret::Error naming the path.
// Thread-safe (no shared state).
void write(const std::filesystem::path& path, const std::vector<uint8_t>& rgb, int64_t frames,
           int64_t height, int64_t width, int fps = 10, const std::string& codec = "");

// The encoder that write() picks for codec = "".
std::string default_codec();

}  // namespace m3ret::data::video
