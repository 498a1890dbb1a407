// The manifest CSV: `path,modality,labels,group,split` (header required), and
// optionally a sixth column `dataset`: the dataset a row comes from (what
// [loader] dataset weights refer to; empty = none). Importers fill it with
// their name.
// `labels` is '|'-separated; `path` is a file, a DICOM series folder, one
// series of a folder as "FOLDER#SERIES_ID" (data/dicom.h) or a video;
// relative paths resolve against the manifest's folder. Fields are quoted as in
// RFC 4180 when they contain ',', '"' or a newline.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace m3ret::data {

struct ManifestRow {
  std::filesystem::path path;  // absolute after read_manifest()
  std::string modality;
  std::vector<std::string> labels;
  std::string group;
  std::string split;
  std::string dataset;  // optional column; "" when absent
  int64_t line = 0;     // 1-based line in the CSV (header is line 1)
};

// Reads and validates a manifest. Throws m3ret::Error naming the file and the
// row (line) for: a missing/unknown header, a wrong number of fields, an empty
// path, an unknown modality or split, a path listed twice (after resolving). Missing files are NOT checked here (the sharder
// records them in rejects.csv); use check_paths=true to make them errors too.
std::vector<ManifestRow> read_manifest(const std::filesystem::path& csv, bool check_paths = false);

// Writes rows atomically; paths are written relative to the CSV's folder when
// they lie under it. The `dataset` column is written when a row has one.
void write_manifest(const std::filesystem::path& csv, const std::vector<ManifestRow>& rows);

// Stable sample id for a row: its path relative to the manifest folder.
std::string sample_id(const ManifestRow& row, const std::filesystem::path& manifest_dir);

}  // namespace m3ret::data
