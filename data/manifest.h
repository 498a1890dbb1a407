// The manifest CSV: `path,modality,labels,group,split` (header required), and
// optionally a sixth column `dataset`: the dataset a row comes from (what
// [loader] dataset weights refer to; empty = none). Importers fill it with
// their name.
// `labels` is '|'-separated; `path` is a file, a DICOM series folder, one
// series of a folder as "FOLDER#SERIES_ID" (data/dicom.h) or a video;
// relative paths resolve against the manifest's folder. Fields are quoted as in
// RFC 4180 when they contain ',', '"' or a newline.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
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

// Where a row's record starts in the CSV: its byte offset and its line.
struct RowPosition {
  int64_t offset = 0;
  int64_t line = 0;
};

// Streams the manifest once and validates it exactly as read_manifest does
// (the same checks and errors, and the same error first when there are
// several), calling visit(row, position) for each row in file order. It keeps
// no rows: besides the row at hand it holds 8 bytes per row (a hash of the
// resolved path, to refuse duplicates; equal hashes are confirmed by reading
// those rows again). The errors are thrown after the visits, so act on what
// visit saw only once this returns. Returns the number of rows.
int64_t scan_manifest(const std::filesystem::path& csv,
                      const std::function<void(const ManifestRow&, const RowPosition&)>& visit,
                      bool check_paths = false);

// Reads the rows of a manifest from a position scan_manifest reported, one at
// a time, without reading what lies before it: the second pass of a reader
// that wants only some rows. Rows are validated as by read_manifest (errors
// name the file and line) except for duplicates, which scan_manifest refused.
class ManifestCursor {
 public:
  // Opens the manifest and reads its header; next() then returns the first row.
  explicit ManifestCursor(const std::filesystem::path& csv);
  ~ManifestCursor();
  ManifestCursor(const ManifestCursor&) = delete;
  ManifestCursor& operator=(const ManifestCursor&) = delete;

  // The next row is the one whose record starts at `at`.
  void seek(const RowPosition& at);
  // The next row and where it starts; false at the end of the file.
  bool next(ManifestRow& row, RowPosition* at = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Writes rows atomically; paths are written relative to the CSV's folder when
// they lie under it. The `dataset` column is written when a row has one.
void write_manifest(const std::filesystem::path& csv, const std::vector<ManifestRow>& rows);

// Stable sample id for a row: its path relative to the manifest folder.
std::string sample_id(const ManifestRow& row, const std::filesystem::path& manifest_dir);

}  // namespace m3ret::data
