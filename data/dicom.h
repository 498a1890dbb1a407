// DICOM headers and series (internal to data/; used by the readers and the
// `dicom` importer). Decoding itself goes through ITK (data/itk_image.h).
//
// A series is referred to by a path: a folder that holds one series (or whose
// largest series is meant), or "FOLDER#SERIES_ID" for one of several series
// in the same folder, where SERIES_ID is the identifier that
// itk::GDCMSeriesFileNames gives it (the SeriesInstanceUID, refined by the
// acquisition details so that a mixed series splits into consistent stacks).
// Thread-safe: no shared state.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "data/isolate.h"

namespace m3ret::data::dicom {

// Tags read from one file's header (pixel data is not read). Values trimmed.
struct Header {
  std::string modality;     // (0008,0060), e.g. "CT", "MR", "DX"
  std::string patient_id;   // (0010,0020)
  std::string study_uid;    // (0020,000D)
  std::string series_uid;   // (0020,000E)
  std::string description;  // (0008,103E) Series Description
  int64_t frames = 1;       // (0028,0008) Number of Frames, 1 when absent
};

// The limits of list_series's child by default: 120 s and 8192 MB.
inline isolate::Limits listing_limits() {
  isolate::Limits l;
  l.task = "listing its DICOM series";
  l.timeout_setting = l.memory_setting = "";
  return l;
}

// Reads the header of `file`. Throws m3ret::InputError(file, reason) when it
// is not a DICOM file GDCM can parse (or is cut inside its meta information).
Header read_header(const std::filesystem::path& file);

struct Series {
  std::string id;                            // GDCMSeriesFileNames identifier
  std::vector<std::filesystem::path> files;  // ordered by slice position
  Header header;                             // of the first file
};

// The series of the files directly in `dir` (not recursive), largest first
// (ties by id). Non-DICOM files are ignored. Throws m3ret::InputError(dir,
// reason) when a DICOM file is cut inside its meta information (GDCM would
// abort the process on it). GDCM runs in a child process (data/isolate.h) with
// `limits`: a folder on which it crashes, or that needs more time or memory, is
// an InputError naming the folder.
std::vector<Series> list_series(const std::filesystem::path& dir,
                                const isolate::Limits& limits = listing_limits());
// The same in this process, for code that already runs in a decoding child
// (data/itk_image.cc).
std::vector<Series> list_series_here(const std::filesystem::path& dir);

// The m3ret modality of a DICOM Modality code: CT -> ct; MR -> mri;
// CR DX DR MG RG PX IO -> xray; US -> ultrasound; ES GM XC -> endoscopy;
// "" for anything else (no default: the caller decides).
std::string modality_for(const std::string& code);

// "DIR#ID", and its inverse: true (and dir, id set) when `ref` is not an
// existing path, contains '#', and the part before the last '#' is a folder.
std::filesystem::path series_ref(const std::filesystem::path& dir, const std::string& id);
bool split_series_ref(const std::filesystem::path& ref, std::filesystem::path& dir,
                      std::string& id);

}  // namespace m3ret::data::dicom
