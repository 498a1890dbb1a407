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
//   chexpert     CheXpert-v1.0[-small]/{train,valid}.csv (Path, Frontal/Lateral, 14
//                observations 1.0/0.0/-1.0/blank), group patientNNNNN       -> xray
//   mimic-cxr    MIMIC-CXR-JPG files/pXX/pSUBJECT/sSTUDY/DICOM.jpg with
//                mimic-cxr-2.0.0-{split,chexpert,metadata}.csv.gz, group subject_id -> xray
//   totalsegmentator  sXXXX/ct.nii.gz and meta.csv (';': image_id, split, pathology,
//                study_type, ...), masks in segmentations/ not imported  -> ct
//   kvasir-capsule  labelled_images/<class>/<video>_<frame>.jpg, official_splits/split_{0,1}.csv,
//                labelled_videos/ (labels: their frames' classes), unlabelled_videos/ (none,
//                train); group = video                                   -> endoscopy
// Layouts, labels, groups and splits per dataset: docs/data.md ("Importers").
#pragma once

#include <filesystem>
#include <map>
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
  // Importer options, key -> value (Importer::options lists those each importer takes;
  // import_dataset rejects others and fills in the defaults).
  std::map<std::string, std::string> options;
};

// One option an importer takes: `values` are the accepted values, the first the default.
struct ImportOption {
  std::string key;
  std::vector<std::string> values;
  std::string help;
};

// Parses "KEY=VALUE" into opts.options; throws m3ret::Error for text without '=' or
// with an empty key. (Whether the importer takes KEY is checked by import_dataset.)
void parse_import_option(const std::string& key_value, ImportOptions& opts);

// Throws m3ret::Error naming the importer, key and accepted values when importer `name` does
// not take one of opts.options or one of their values (import_dataset checks the same first).
void check_import_options(const std::string& name, const ImportOptions& opts);

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
  std::string summary;  // one line for --help (importers() appends the options)
  ImportResult (*run)(const ImportOptions&);
  std::vector<ImportOption> options;
};

// Every importer, by name.
const std::vector<Importer>& importers();

// Runs importer `name` on opts.root and writes opts.out atomically (written
// last: its presence means the import is complete), plus, when something was
// skipped, "<out without .csv>.skipped.csv" (path,reason). Throws m3ret::Error
// for an unknown name (listing the known ones), an option the importer does not take
// or a value it does not accept (listing those it does), a missing root, a layout that
// does not match (naming the file or folder that was expected) or no samples.
ImportResult import_dataset(const std::string& name, const ImportOptions& opts);

}  // namespace m3ret::data
