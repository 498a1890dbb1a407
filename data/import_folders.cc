// The folder-per-class importers: `folder` (any modality) and `busi`.
#include <fmt/format.h>

#include "core/error.h"
#include "data/import_util.h"

namespace m3ret::data::importer {

namespace stdfs = std::filesystem;

ImportResult folder(const ImportOptions& opts) {
  if (opts.modality.empty()) {
    throw Error(
        "import folder: the folder layout does not say the modality: pass --modality "
        "(xray, ultrasound, endoscopy, ct, mri or other)");
  }
  ImportResult out;
  // ROOT/{train,val,test}/<class>/** when those folders exist, else ROOT/<class>/**.
  bool split_layout = false;
  for (const char* split : {"train", "val", "test"}) {
    if (stdfs::is_directory(opts.root / split)) {
      split_layout = true;
      add_class_folders(opts.root / split, opts.modality, split, out);
    }
  }
  if (!split_layout) add_class_folders(opts.root, opts.modality, "", out);
  return out;
}

ImportResult busi(const ImportOptions& opts) {
  // The root may be the Dataset_BUSI_with_GT folder itself or the folder holding it.
  stdfs::path base = opts.root / "Dataset_BUSI_with_GT";
  if (!stdfs::is_directory(base)) base = opts.root;
  ImportResult out;
  for (const char* cls : {"benign", "malignant", "normal"}) {
    const stdfs::path dir = base / cls;
    require("busi", dir, fmt::format("class folder '{}' (Dataset_BUSI_with_GT/{}/)", cls, cls));
    for (const auto& file : files_under(dir, out.skipped)) {
      const std::string name = lower_name(file);
      if (name.find("_mask") != std::string::npos) continue;  // segmentation masks
      if (!is_sample_file(file)) continue;
      ManifestRow row;
      row.path = file;
      row.modality = opts.modality.empty() ? "ultrasound" : opts.modality;
      row.labels = {cls};
      out.rows.push_back(std::move(row));
    }
  }
  return out;
}

}  // namespace m3ret::data::importer
