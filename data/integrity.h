// Integrity checks that ITK's readers skip (internal to data/):
//  - libpng aborts the process on some corrupt PNGs when ITK reads their
//    header, and ITK's JPEG reader crashes on some corrupt JPEGs, so PNG and
//    JPEG files are first decoded fully by libpng/libjpeg with an error
//    handler installed (twice the decode cost for these formats);
//  - GDCM aborts on a DICOM file cut inside its File Meta Information;
//  - ITK's NIfTI reader accepts truncated files (missing voxels read as 0),
//    so the stored voxel bytes are counted (through zlib for .nii.gz).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace m3ret::data::integrity {

// Why `path` cannot be opened as a file without risk of blocking: "" for a
// regular file (or a symbolic link to one), else "does not exist", "not a
// regular file (a FIFO)" (also a directory, socket or device), or the
// system's reason (e.g. a symbolic link loop). Never opens the path.
std::string not_a_regular_file(const std::filesystem::path& path);

// True when the file starts with the PNG signature.
bool is_png(const std::filesystem::path& path);

// "" when the product of `shape` is at most max_pixels, else the refusal
// "absurd image size WxHx...: N pixels, more than preprocess.max_input_pixels = L ...".
std::string too_many_pixels(const std::vector<int64_t>& shape, int64_t max_pixels);

// Decodes the whole PNG with libpng; returns "" when it decodes, else the
// reason ("corrupt PNG: " + libpng's message, or too_many_pixels() when the
// header promises more than max_pixels: checked before any row is decoded).
// Thread-safe.
std::string png_error(const std::filesystem::path& path, int64_t max_pixels);

// True when the file starts with the JPEG SOI marker (FF D8 FF).
bool is_jpeg(const std::filesystem::path& path);

// Decodes the whole JPEG with libjpeg; returns "" when it decodes, else the
// reason ("corrupt JPEG: " + libjpeg's message, or too_many_pixels() as for
// PNG). Corrupt-data warnings count as errors. Thread-safe.
std::string jpeg_error(const std::filesystem::path& path, int64_t max_pixels);

// For a Part-10 DICOM file ("DICM" at byte 128): "" when the file is long
// enough to hold its whole File Meta Information group (as announced by
// (0002,0000) group length), else the reason. GDCM (with its assertions on,
// as Debian builds it) aborts the process on a file cut inside that group.
// Files without the DICM marker return "".
std::string dicom_meta_error(const std::filesystem::path& path);

// Bytes of payload in the file (after gunzip when the name ends in ".gz");
// returns -1 and sets `reason` when the gzip stream is corrupt or truncated.
// `sink`, when given, sees every payload byte in order (chunk by chunk).
int64_t payload_bytes(const std::filesystem::path& path, std::string& reason,
                      const std::function<void(const uint8_t*, size_t)>& sink = nullptr);

// Scans the floating-point voxels of a NIfTI payload as it streams past
// (offset: first voxel byte; bytes: 4 or 8; swap: file byte order differs
// from the CPU's). ok() is false once a NaN or Inf was seen.
class NonFiniteScan {
 public:
  NonFiniteScan(int64_t offset, int bytes, bool swap)
      : offset_(offset), bytes_(bytes), swap_(swap) {}
  void operator()(const uint8_t* p, size_t n);
  bool ok() const { return ok_; }

 private:
  int64_t offset_, pos_ = 0;
  int bytes_, filled_ = 0;
  bool swap_, ok_ = true;
  uint8_t elem_[8] = {0};
};

}  // namespace m3ret::data::integrity
