#include "data/importers.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/csv.h"
#include "data/import_util.h"
#include "data/sample.h"

namespace m3ret::data {

namespace stdfs = std::filesystem;

const std::vector<Importer>& importers() {
  static const std::vector<Importer> all = {
      {"chestxray14", "NIH ChestX-ray14 (Data_Entry_2017.csv, images_*/, official split lists) -> xray",
       importer::chestxray14},
      {"hyperkvasir", "HyperKvasir labeled-images/ and labeled-videos/ -> endoscopy", importer::hyperkvasir},
      {"busi", "BUSI Dataset_BUSI_with_GT/{benign,malignant,normal}, masks skipped -> ultrasound",
       importer::busi},
      {"medmnist", "MedMNIST v2 .npz files (2D and 3D), written out as PNG / NIfTI", importer::medmnist},
      {"folder", "ROOT/<class>/** or ROOT/{train,val,test}/<class>/** (set --modality)", importer::folder},
      {"dicom", "a DICOM tree: one sample per series, modality from the header", importer::dicom_tree},
  };
  return all;
}

ImportResult import_dataset(const std::string& name, const ImportOptions& opts) {
  const Importer* chosen = nullptr;
  std::vector<std::string> names;
  for (const auto& imp : importers()) {
    names.push_back(imp.name);
    if (imp.name == name) chosen = &imp;
  }
  if (!chosen) {
    throw Error(fmt::format("import: unknown dataset '{}' (known: {})", name, fmt::join(names, ", ")));
  }
  if (!opts.modality.empty() && !is_modality(opts.modality)) {
    throw Error(fmt::format("import {}: unknown modality '{}' (expected one of {})", name, opts.modality,
                            fmt::join(modality_names(), ", ")));
  }
  std::error_code ec;
  if (!stdfs::is_directory(opts.root, ec)) {
    throw Error(fmt::format("import {}: --root {} is not a folder", name, opts.root.string()));
  }
  // The labels CSV is checked before the (possibly long) scan of the root.
  const importer::LabelTable labels = importer::read_label_table(opts);
  ImportResult result = chosen->run(opts);
  importer::join_labels(opts, labels, result);
  if (result.rows.empty()) {
    throw Error(fmt::format("import {}: no samples found under {} ({} skipped{})", name, opts.root.string(),
                            result.skipped.size(),
                            result.skipped.empty() ? "" : "; first: " + result.skipped.front()));
  }
  // The skip list first, the manifest last (its presence means the import is complete).
  stdfs::path skipped = opts.out;
  skipped.replace_extension(".skipped.csv");
  stdfs::remove(skipped, ec);
  if (!result.skipped.empty()) {
    std::string text = "path,reason\n";
    for (const auto& s : result.skipped) {
      const size_t colon = s.rfind(": ");
      text += csv::quote(s.substr(0, colon)) + "," +
              csv::quote(colon == std::string::npos ? "" : s.substr(colon + 2)) + "\n";
    }
    fs::write_atomic(skipped, text);
  }
  write_manifest(opts.out, result.rows);
  return result;
}

}  // namespace m3ret::data
