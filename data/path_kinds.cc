// What a path names, decided from the path alone (no file is opened): a video by its extension,
// a DICOM series reference DIR#SERIES_UID. Apart from the readers (data/video_reader.cc,
// data/dicom.cc), so that code that only classifies paths does not link FFmpeg or GDCM.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <string>

#include "data/dicom.h"
#include "data/video_reader.h"

namespace m3ret::data {

namespace stdfs = std::filesystem;

namespace video {

bool is_video_path(const stdfs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  for (const char* e : {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ogv"}) {
    if (ext == e) return true;
  }
  return false;
}

}  // namespace video

namespace dicom {

bool split_series_ref(const stdfs::path& ref, stdfs::path& dir, std::string& id) {
  std::error_code ec;
  if (stdfs::exists(ref, ec)) return false;
  const std::string s = ref.string();
  const size_t hash = s.rfind('#');
  if (hash == std::string::npos || hash + 1 == s.size()) return false;
  const stdfs::path d = s.substr(0, hash);
  if (!stdfs::is_directory(d, ec)) return false;
  dir = d;
  id = s.substr(hash + 1);
  return true;
}

}  // namespace dicom

}  // namespace m3ret::data
