// Chest X-ray sets labelled by the CheXpert labeler: CheXpert (Stanford) and
// MIMIC-CXR-JPG (PhysioNet). Both give 14 observations per image or study with
// the values 1.0 (positive), 0.0 (negative), -1.0 (uncertain) or blank (not
// mentioned); a row's labels are its positive observations ("No Finding"
// included), plus the uncertain ones with option uncertain=positive.
//
// CheXpert: CheXpert-v1.0[-small]/{train,valid}.csv, columns Path, Sex, Age,
//   Frontal/Lateral, AP/PA, then the observations; Path is
//   CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg. train.csv
//   -> train, valid.csv (the radiologist-labelled set) -> test; group = patient.
// MIMIC-CXR-JPG: files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg; mimic-cxr-2.0.0-split.csv.gz
//   (dicom_id, study_id, subject_id, split = train/validate/test) lists the images,
//   mimic-cxr-2.0.0-chexpert.csv.gz (subject_id, study_id, observations) labels
//   studies, mimic-cxr-2.0.0-metadata.csv.gz gives ViewPosition (views=frontal).
#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "core/error.h"
#include "data/import_util.h"

namespace m3ret::data::importer {

namespace stdfs = std::filesystem;

namespace {

const std::vector<std::string> kObservations = {"No Finding",       "Enlarged Cardiomediastinum",
                                                "Cardiomegaly",     "Lung Opacity",
                                                "Lung Lesion",      "Edema",
                                                "Consolidation",    "Pneumonia",
                                                "Atelectasis",      "Pneumothorax",
                                                "Pleural Effusion", "Pleural Other",
                                                "Fracture",         "Support Devices"};

// The observation columns of a CheXpert-labelled table, and how to read them.
struct Observations {
  std::vector<size_t> columns;  // parallel to kObservations
  bool uncertain_positive = false;

  Observations(const Table& t, const ImportOptions& opts)
      : uncertain_positive(opts.options.at("uncertain") == "positive") {
    for (const auto& name : kObservations) columns.push_back(t.column(name));
  }

  // The labels of record r; throws "FILE:LINE: column 'X': value 'V' is not ..." for another value.
  std::vector<std::string> labels(const Table& t, size_t r) const {
    const auto& f = t.row(r);
    std::vector<std::string> out;
    for (size_t i = 0; i < columns.size(); ++i) {
      const std::string& v = f[columns[i]];
      if (v == "1.0" || v == "1" || ((v == "-1.0" || v == "-1") && uncertain_positive)) {
        out.push_back(kObservations[i]);
      } else if (v != "0.0" && v != "0" && v != "-1.0" && v != "-1" && !v.empty()) {
        throw Error(fmt::format("{}:{}: column '{}': value '{}' is not 1.0, 0.0, -1.0 or empty",
                                t.name, t.records[r].line, kObservations[i], v));
      }
    }
    return out;
  }
};

// The folder holding CheXpert's train.csv: the root or CheXpert-v1.0[-small]/ in it.
stdfs::path chexpert_dir(const stdfs::path& root) {
  for (const char* sub : {"", "CheXpert-v1.0-small", "CheXpert-v1.0"}) {
    if (stdfs::exists(root / sub / "train.csv")) return root / sub;
  }
  throw Error(
      fmt::format("import chexpert: train.csv not found in {} (nor in CheXpert-v1.0-small/ or "
                  "CheXpert-v1.0/ below it)",
                  root.string()));
}

// The rows of CheXpert's train.csv or valid.csv (`csv` in `dir`), all in `split`.
void add_chexpert_csv(const stdfs::path& dir, const std::string& csv, const std::string& split,
                      const ImportOptions& opts, ImportResult& out) {
  require("chexpert", dir / csv, csv);
  const Table t = read_table(dir / csv);
  const Observations obs(t, opts);
  const size_t c_path = t.column("Path"), c_view = t.column("Frontal/Lateral");
  const bool frontal_only = opts.options.at("views") == "frontal";
  for (size_t r = 1; r < t.records.size(); ++r) {
    const auto& f = t.row(r);
    // Path starts with the dataset folder's name (CheXpert-v1.0-small/train/...): taken
    // relative to `dir` whatever that folder is called here.
    stdfs::path rel(f[c_path]);
    if (rel.begin() != rel.end() && *rel.begin() != "train" && *rel.begin() != "valid") {
      rel = rel.lexically_relative(*rel.begin());
    }
    const auto patient = std::find_if(rel.begin(), rel.end(), [](const stdfs::path& p) {
      return p.string().rfind("patient", 0) == 0;
    });
    const std::string where = fmt::format("listed in {} line {}", csv, t.records[r].line);
    if (patient == rel.end()) {
      out.skipped.push_back(
          fmt::format("{}: {} has no patientNNNNN folder in its Path", f[c_path], where));
      continue;
    }
    std::vector<std::string> labels = obs.labels(t, r);
    if (frontal_only && f[c_view] != "Frontal") {
      out.skipped.push_back(
          fmt::format("{}: {} is a {} view (views=frontal)", f[c_path], where, f[c_view]));
      continue;
    }
    if (!stdfs::exists(dir / rel)) {
      out.skipped.push_back(
          fmt::format("{}: {} but not found under {}", f[c_path], where, dir.string()));
      continue;
    }
    ManifestRow row;
    row.path = dir / rel;
    row.modality = opts.modality.empty() ? "xray" : opts.modality;
    row.labels = std::move(labels);
    row.group = "chexpert:" + patient->string();
    row.split = split;
    out.rows.push_back(std::move(row));
  }
}

// MIMIC-CXR-JPG's labels per study: "SUBJECT/STUDY" -> labels.
std::map<std::string, std::vector<std::string>> mimic_labels(const Table& t,
                                                             const ImportOptions& opts) {
  const Observations obs(t, opts);
  const size_t c_subject = t.column("subject_id"), c_study = t.column("study_id");
  std::map<std::string, std::vector<std::string>> out;
  for (size_t r = 1; r < t.records.size(); ++r) {
    const auto& f = t.row(r);
    out[f[c_subject] + "/" + f[c_study]] = obs.labels(t, r);
  }
  return out;
}

// MIMIC-CXR-JPG's ViewPosition per dicom_id (metadata file).
std::map<std::string, std::string> mimic_views(const Table& t) {
  const size_t c_dicom = t.column("dicom_id"), c_view = t.column("ViewPosition");
  std::map<std::string, std::string> out;
  for (size_t r = 1; r < t.records.size(); ++r) out[t.row(r)[c_dicom]] = t.row(r)[c_view];
  return out;
}

const char* const kMimicSplit = "mimic-cxr-2.0.0-split.csv";
const char* const kMimicChexpert = "mimic-cxr-2.0.0-chexpert.csv";
const char* const kMimicMetadata = "mimic-cxr-2.0.0-metadata.csv";

// The table `name`.gz (or `name`, decompressed) in `root`; an error naming the file when absent.
Table mimic_table(const stdfs::path& root, const std::string& name) {
  return read_table(require_one("mimic-cxr", root, {name + ".gz", name}));
}

}  // namespace

ImportResult chexpert(const ImportOptions& opts) {
  const stdfs::path dir = chexpert_dir(opts.root);
  require("chexpert", dir / "valid.csv", "valid.csv");  // checked before the long train.csv
  ImportResult out;
  add_chexpert_csv(dir, "train.csv", "train", opts, out);
  add_chexpert_csv(dir, "valid.csv", "test", opts, out);
  return out;
}

ImportResult mimic_cxr(const ImportOptions& opts) {
  require("mimic-cxr", opts.root / "files", "the image folder files/");
  const Table split = mimic_table(opts.root, kMimicSplit);
  const auto labels = mimic_labels(mimic_table(opts.root, kMimicChexpert), opts);
  const bool frontal_only = opts.options.at("views") == "frontal";
  const auto views = frontal_only ? mimic_views(mimic_table(opts.root, kMimicMetadata))
                                  : std::map<std::string, std::string>{};
  const size_t c_dicom = split.column("dicom_id"), c_study = split.column("study_id"),
               c_subject = split.column("subject_id"), c_split = split.column("split");
  const std::map<std::string, std::string> split_names = {
      {"train", "train"}, {"validate", "val"}, {"test", "test"}};
  ImportResult out;
  for (size_t r = 1; r < split.records.size(); ++r) {
    const auto& f = split.row(r);
    const std::string &subject = f[c_subject], &dicom = f[c_dicom];
    auto s = split_names.find(f[c_split]);
    if (s == split_names.end()) {
      throw Error(fmt::format("{}:{}: split '{}' is not train, validate or test", split.name,
                              split.records[r].line, f[c_split]));
    }
    const stdfs::path file = opts.root / "files" / ("p" + subject.substr(0, 2)) / ("p" + subject) /
                             ("s" + f[c_study]) / (dicom + ".jpg");
    const std::string where =
        fmt::format("listed in {}.gz line {}", kMimicSplit, split.records[r].line);
    auto l = labels.find(subject + "/" + f[c_study]);
    auto v = views.find(dicom);
    std::string why;
    if (l == labels.end()) {
      why = fmt::format("{}; study not in {}.gz", where, kMimicChexpert);
    } else if (frontal_only && (v == views.end() || (v->second != "PA" && v->second != "AP"))) {
      why = v == views.end()
                ? fmt::format("{}; not in {}.gz (views=frontal)", where, kMimicMetadata)
                : fmt::format("{}; view '{}' is not frontal (views=frontal)", where, v->second);
    } else if (!stdfs::exists(file)) {
      why = where + " but not found under the root";
    }
    if (!why.empty()) {
      out.skipped.push_back(fmt::format("{}: {}", file.string(), why));
      continue;
    }
    ManifestRow row;
    row.path = file;
    row.modality = opts.modality.empty() ? "xray" : opts.modality;
    row.labels = l->second;
    row.group = "mimic-cxr:" + subject;
    row.split = s->second;
    out.rows.push_back(std::move(row));
  }
  return out;
}

}  // namespace m3ret::data::importer
