// Helpers shared by the importers (internal to data/).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/csv.h"
#include "data/importers.h"

namespace m3ret::data::importer {

// What lies under a folder (recursive, symbolic links followed), each list
// sorted by path; hidden files and folders (name starting with '.') are left out.
struct Tree {
  std::vector<std::filesystem::path> files;  // regular files (or links to them)
  std::vector<std::filesystem::path> dirs;   // folders below the root (not the root)
};
// Never throws for what it meets below `dir` and never opens a file: a FIFO,
// socket or device, an entry that cannot be examined (e.g. a symbolic link to
// itself: "Too many levels of symbolic links"), and a folder already visited
// (a symbolic link loop, or a second link to one folder) are skipped, each
// added to `skipped` as "path: reason".
Tree walk(const std::filesystem::path& dir, std::vector<std::string>& skipped);

// walk(dir, skipped).files.
std::vector<std::filesystem::path> files_under(const std::filesystem::path& dir,
                                               std::vector<std::string>& skipped);

// True for the extensions the readers take (images, volumes, DICOM, videos),
// case-insensitive; DICOM files without an extension are not recognised here.
bool is_sample_file(const std::filesystem::path& path);

// The lower-case name of a file (for extension tests, "a.NII.GZ" -> "a.nii.gz").
std::string lower_name(const std::filesystem::path& path);

// Throws m3ret::Error "<importer>: <what> not found: <path>" unless `path` exists.
void require(const std::string& importer, const std::filesystem::path& path,
             const std::string& what);

// The first of `candidates` (relative to root) that exists, else root itself
// when it is one of them already; "" when none.
std::filesystem::path find_first(const std::filesystem::path& root,
                                 const std::vector<std::string>& candidates);

// One row per sample file under `dir`, labelled with the name of the folder
// right below `dir` that holds it (`class_dir/<class>/**`).
void add_class_folders(const std::filesystem::path& dir, const std::string& modality,
                       const std::string& split, ImportResult& out);

// The labels CSV of opts (ImportOptions::labels_csv): id -> (labels, split). Throws
// m3ret::Error naming the file for a missing file, an unknown column (listing the columns
// present), a bad row (FILE:LINE), an empty or repeated id, an unknown split.
struct LabelTable {
  struct Entry {
    std::vector<std::string> labels;
    std::string split;
    bool has_split = false;
  };
  std::map<std::string, Entry> by_id;
};
LabelTable read_label_table(const ImportOptions& opts);

// Sets labels (and split) of every row found in `table`; rows not found move to
// result.skipped ("path: id 'X' not in FILE").
void join_labels(const ImportOptions& opts, const LabelTable& table, ImportResult& result);

// A CSV table (plain or gzip-compressed, read through zlib) with a header row.
struct Table {
  std::string name;                  // the file, for messages
  std::vector<csv::Record> records;  // records[0] is the header
  // The index of column `col`; throws m3ret::Error "FILE:1: no column 'X' (columns present: ...)".
  size_t column(const std::string& col) const;
  // The fields of records[r], r >= 1; throws "FILE:LINE: expected N fields, got M" unless
  // the record has as many fields as the header.
  const std::vector<std::string>& row(size_t r) const;
};
// Throws m3ret::Error naming the file when it cannot be opened, is a damaged gzip
// stream, or has no header row.
Table read_table(const std::filesystem::path& file, char sep = ',');

// The first of `names` (each relative to `dir`) that exists; throws m3ret::Error
// "import <importer>: <names[0]> not found in <dir>" when none does.
std::filesystem::path require_one(const std::string& importer, const std::filesystem::path& dir,
                                  const std::vector<std::string>& names);

// The importers (one file each).
ImportResult chestxray14(const ImportOptions& opts);
ImportResult hyperkvasir(const ImportOptions& opts);
ImportResult busi(const ImportOptions& opts);
ImportResult medmnist(const ImportOptions& opts);
ImportResult folder(const ImportOptions& opts);
ImportResult dicom_tree(const ImportOptions& opts);
ImportResult chexpert(const ImportOptions& opts);
ImportResult mimic_cxr(const ImportOptions& opts);
ImportResult totalsegmentator(const ImportOptions& opts);
ImportResult kvasir_capsule(const ImportOptions& opts);

}  // namespace m3ret::data::importer
