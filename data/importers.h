// Importers: public dataset layouts (as users download them) -> a manifest.
//
//   chestxray14  NIH ChestX-ray14: Data_Entry_2017*.csv, images_*/[images/]*.png,
//                train_val_list.txt / test_list.txt                       -> xray
//   hyperkvasir  labeled-images/<tract>/<category>/<class>/*.jpg and
//                labeled-videos/.../<class>/*.avi (or the video metadata CSV) -> endoscopy
//   busi         Dataset_BUSI_with_GT/{benign,malignant,normal}/*.png, masks skipped -> ultrasound
//   medmnist     <flag>[_<size>].npz files; images are written out as PNG / NIfTI
//   folder       ROOT/<class>/** or ROOT/{train,val,test}/<class>/** (needs a modality)
//   dicom        a DICOM tree: one sample per series (2D modalities: per image),
//                modality from the Modality tag, group from PatientID
// Layouts, labels, groups and splits per dataset: docs/data.md ("Importers").
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "data/manifest.h"

namespace m3ret::data {

struct ImportOptions {
  std::filesystem::path root;  // the dataset folder as downloaded
  std::filesystem::path out;   // the manifest CSV to write; files that an importer
                               // converts (medmnist) go under out's folder/<name>/
  std::string modality;        // overrides the importer's modality ("" = its default)
  // Optional labels CSV joined onto the rows by id (docs/data.md, "Labels from a CSV"):
  // `labels_column` ('|'-separated) replaces each row's labels, `split_column` (when set)
  // its split. Rows whose id is not in the CSV are skipped (listed in MANIFEST.skipped.csv).
  std::filesystem::path labels_csv;
  std::string id_column = "id";
  std::string labels_column = "labels";
  std::string split_column;
};

struct ImportResult {
  std::vector<ManifestRow> rows;     // absolute paths, in a deterministic order
  std::vector<std::string> skipped;  // "path: reason" for inputs left out
  // Per row (when an importer knows them): the ids a labels CSV may key the row by, in order
  // of preference (dicom: PatientID, StudyInstanceUID). Every row is also keyed by its path
  // relative to the root, its file name and its file name without extension.
  std::vector<std::vector<std::string>> ids;
};

struct Importer {
  std::string name;
  std::string summary;  // one line for --help
  ImportResult (*run)(const ImportOptions&);
};

// Every importer, by name.
const std::vector<Importer>& importers();

// Runs importer `name` on opts.root and writes opts.out atomically (written
// last: its presence means the import is complete), plus, when something was
// skipped, "<out without .csv>.skipped.csv" (path,reason). Throws m3ret::Error
// for an unknown name (listing the known ones), a missing root, a layout that
// does not match (naming the file or folder that was expected) or no samples.
ImportResult import_dataset(const std::string& name, const ImportOptions& opts);

}  // namespace m3ret::data
