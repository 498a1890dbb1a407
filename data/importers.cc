#include "data/importers.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/csv.h"
#include "data/import_util.h"
#include "data/sample.h"

namespace m3ret::data {

namespace stdfs = std::filesystem;

namespace {

const std::vector<ImportOption> kChestOptions = {
    {"uncertain",
     {"negative", "positive"},
     "an uncertain (-1.0) observation is no label (negative) or a label (positive)"},
    {"views", {"all", "frontal"}, "keep every image, or only frontal ones (AP/PA)"},
};

std::vector<Importer> make_importers() {
  std::vector<Importer> all = {
      {"chestxray14",
       "NIH ChestX-ray14 (Data_Entry_2017.csv, images_*/, official split lists) -> xray",
       importer::chestxray14,
       {}},
      {"hyperkvasir",
       "HyperKvasir labeled-images/, unlabeled-images/ and labeled-videos/ -> endoscopy",
       importer::hyperkvasir,
       {}},
      {"busi",
       "BUSI Dataset_BUSI_with_GT/{benign,malignant,normal}, masks skipped -> ultrasound",
       importer::busi,
       {}},
      {"medmnist",
       "MedMNIST v2 .npz files (2D and 3D), written out as PNG / NIfTI",
       importer::medmnist,
       {}},
      {"folder",
       "ROOT/<class>/** or ROOT/{train,val,test}/<class>/** (set --modality)",
       importer::folder,
       {}},
      {"dicom",
       "a DICOM tree: one sample per series, modality from the header",
       importer::dicom_tree,
       {}},
      {"chexpert",
       "CheXpert-v1.0[-small] train.csv -> train, valid.csv -> test; group patient -> xray",
       importer::chexpert, kChestOptions},
      {"mimic-cxr", "MIMIC-CXR-JPG files/ with the split, chexpert (and metadata) .csv.gz -> xray",
       importer::mimic_cxr, kChestOptions},
      {"totalsegmentator",
       "TotalSegmentator CT sXXXX/ct.nii.gz with meta.csv (split, labels) -> ct",
       importer::totalsegmentator,
       {{"labels", {"pathology", "study_type"}, "the meta.csv column that gives the labels"}}},
      {"kvasir-capsule",
       "Kvasir-Capsule labelled_images/<class>/, labelled_videos/, unlabelled_videos/; group video "
       "-> endoscopy",
       importer::kvasir_capsule,
       {}},
  };
  for (auto& imp : all) {
    for (const auto& o : imp.options) {
      imp.summary += fmt::format("; option {}={} (default {}): {}", o.key, fmt::join(o.values, "|"),
                                 o.values.front(), o.help);
    }
  }
  return all;
}

// opts with every option of `imp` set (defaults filled in), after checking keys and values.
ImportOptions resolve_options(const Importer& imp, const ImportOptions& opts) {
  ImportOptions out = opts;
  std::vector<std::string> keys;
  for (const auto& o : imp.options) keys.push_back(o.key);
  for (const auto& [key, value] : opts.options) {
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      throw Error(fmt::format("import {}: unknown option '{}' (options of {}: {})", imp.name, key,
                              imp.name,
                              keys.empty() ? "none" : fmt::format("{}", fmt::join(keys, ", "))));
    }
  }
  for (const auto& o : imp.options) {
    auto it = out.options.find(o.key);
    if (it == out.options.end()) {
      out.options[o.key] = o.values.front();
    } else if (std::find(o.values.begin(), o.values.end(), it->second) == o.values.end()) {
      throw Error(fmt::format("import {}: option {}={}: expected one of {}", imp.name, o.key,
                              it->second, fmt::join(o.values, ", ")));
    }
  }
  return out;
}

}  // namespace

const std::vector<Importer>& importers() {
  static const std::vector<Importer> all = make_importers();
  return all;
}

void parse_import_option(const std::string& key_value, ImportOptions& opts) {
  const size_t eq = key_value.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw Error(fmt::format("import: option '{}' is not KEY=VALUE", key_value));
  }
  opts.options[key_value.substr(0, eq)] = key_value.substr(eq + 1);
}

namespace {
const Importer& find_importer(const std::string& name) {
  std::vector<std::string> names;
  for (const auto& imp : importers()) {
    if (imp.name == name) return imp;
    names.push_back(imp.name);
  }
  throw Error(
      fmt::format("import: unknown dataset '{}' (known: {})", name, fmt::join(names, ", ")));
}
}  // namespace

void check_import_options(const std::string& name, const ImportOptions& opts) {
  resolve_options(find_importer(name), opts);
}

ImportResult import_dataset(const std::string& name, const ImportOptions& opts) {
  const Importer* chosen = &find_importer(name);
  if (!opts.modality.empty() && !is_modality(opts.modality)) {
    throw Error(fmt::format("import {}: unknown modality '{}' (expected one of {})", name,
                            opts.modality, fmt::join(modality_names(), ", ")));
  }
  const ImportOptions resolved = resolve_options(*chosen, opts);
  std::error_code ec;
  if (!stdfs::is_directory(opts.root, ec)) {
    throw Error(fmt::format("import {}: --root {} is not a folder", name, opts.root.string()));
  }
  // The labels CSV is checked before the (possibly long) scan of the root.
  const importer::LabelTable labels = importer::read_label_table(opts);
  ImportResult result = chosen->run(resolved);
  importer::join_labels(opts, labels, result);
  if (result.rows.empty()) {
    throw Error(fmt::format("import {}: no samples found under {} ({} skipped{})", name,
                            opts.root.string(), result.skipped.size(),
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
  for (auto& row : result.rows) row.dataset = name;  // the manifest's dataset column
  write_manifest(opts.out, result.rows);
  return result;
}

}  // namespace m3ret::data
