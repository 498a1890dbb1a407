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
#include <string>

namespace m3ret::data::integrity {

// True when the file starts with the PNG signature.
bool is_png(const std::filesystem::path& path);

// Decodes the whole PNG with libpng; returns "" when it decodes, else the
// reason (libpng's message). Thread-safe.
std::string png_error(const std::filesystem::path& path);

// True when the file starts with the JPEG SOI marker (FF D8 FF).
bool is_jpeg(const std::filesystem::path& path);

// Decodes the whole JPEG with libjpeg; returns "" when it decodes, else the
// reason (libjpeg's message). Corrupt-data warnings count as errors.
// Thread-safe.
std::string jpeg_error(const std::filesystem::path& path);

// For a Part-10 DICOM file ("DICM" at byte 128): "" when the file is long
// enough to hold its whole File Meta Information group (as announced by
// (0002,0000) group length), else the reason. GDCM (with its assertions on,
// as Debian builds it) aborts the process on a file cut inside that group.
// Files without the DICM marker return "".
std::string dicom_meta_error(const std::filesystem::path& path);

// Bytes of payload in the file (after gunzip when the name ends in ".gz");
// returns -1 and sets `reason` when the gzip stream is corrupt or truncated.
int64_t payload_bytes(const std::filesystem::path& path, std::string& reason);

}  // namespace m3ret::data::integrity
