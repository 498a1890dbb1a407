// TotalSegmentator (CT): one folder per subject, sXXXX/ct.nii.gz (with
// sXXXX/segmentations/<structure>.nii.gz masks, not imported), and meta.csv,
// ';'-separated with a UTF-8 byte order mark: image_id;age;gender;institute;
// study_type;split;manufacturer;scanner_model;kvp;pathology;pathology_location
// (v1 stops after split). split is train/val/test; the labels come from the
// column named by option `labels` (pathology by default, or study_type).
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "data/import_util.h"

namespace m3ret::data::importer {

namespace stdfs = std::filesystem;

ImportResult totalsegmentator(const ImportOptions& opts) {
  require("totalsegmentator", opts.root / "meta.csv", "meta.csv");
  const Table meta = read_table(opts.root / "meta.csv", ';');
  const std::string& label_column = opts.options.at("labels");
  const size_t c_id = meta.column("image_id"), c_split = meta.column("split"),
               c_label = meta.column(label_column);
  ImportResult out;
  std::set<std::string> listed;
  for (size_t r = 1; r < meta.records.size(); ++r) {
    const auto& f = meta.row(r);
    const std::string& id = f[c_id];
    const int64_t line = meta.records[r].line;
    if (f[c_split] != "train" && f[c_split] != "val" && f[c_split] != "test") {
      throw Error(
          fmt::format("{}:{}: split '{}' is not train, val or test", meta.name, line, f[c_split]));
    }
    if (id.empty() || id.find('/') != std::string::npos || id == "." || id == "..") {
      throw Error(
          fmt::format("{}:{}: image_id '{}' is not a subject folder name", meta.name, line, id));
    }
    listed.insert(id);
    const stdfs::path ct = opts.root / id / "ct.nii.gz";
    if (!stdfs::exists(ct)) {
      out.skipped.push_back(
          fmt::format("{}: listed in meta.csv line {} but not found", ct.string(), line));
      continue;
    }
    ManifestRow row;
    row.path = ct;
    row.modality = opts.modality.empty() ? "ct" : opts.modality;
    if (!f[c_label].empty()) row.labels = {f[c_label]};
    row.group = "totalsegmentator:" + id;
    row.split = f[c_split];
    out.rows.push_back(std::move(row));
  }
  // Subject folders that meta.csv does not list (a later release unpacked over an older one).
  std::set<stdfs::path> unlisted;
  std::error_code ec;
  for (auto it = stdfs::directory_iterator(opts.root, ec); !ec && it != stdfs::directory_iterator();
       it.increment(ec)) {
    if (stdfs::exists(it->path() / "ct.nii.gz") && !listed.count(it->path().filename().string())) {
      unlisted.insert(it->path() / "ct.nii.gz");
    }
  }
  for (const auto& ct : unlisted)
    out.skipped.push_back(fmt::format("{}: not listed in meta.csv", ct.string()));
  return out;
}

}  // namespace m3ret::data::importer
