// A DICOM tree: every folder is scanned for series (itk::GDCMSeriesFileNames).
// Volumes (ct, mri) are one sample per series: the folder when it holds one
// series, "FOLDER#ID" when it holds several, the file for a one-file
// (multi-frame) series. 2D modalities (xray, ultrasound, endoscopy stills)
// are one sample per file. The modality comes from the Modality tag (or
// --modality for codes without one); the group is the PatientID.
#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"
#include "data/dicom.h"
#include "data/import_util.h"

namespace m3ret::data::importer {

namespace stdfs = std::filesystem;

ImportResult dicom_tree(const ImportOptions& opts) {
  ImportResult out;
  std::vector<stdfs::path> dirs = walk(opts.root, out.skipped).dirs;
  dirs.insert(dirs.begin(), opts.root);
  for (const auto& dir : dirs) {
    std::vector<dicom::Series> series;
    try {
      series = dicom::list_series(dir);
    } catch (const InputError& e) {
      out.skipped.push_back(fmt::format("{}: {}", e.path(), e.reason()));
      continue;
    }
    std::sort(series.begin(), series.end(), [](const dicom::Series& a, const dicom::Series& b) {
      return a.files.front() < b.files.front();
    });
    for (const auto& s : series) {
      std::string modality = dicom::modality_for(s.header.modality);
      if (modality.empty()) modality = opts.modality;
      if (modality.empty()) {
        out.skipped.push_back(
            fmt::format("{}: DICOM Modality '{}' has no m3ret modality (pass --modality)",
                        s.files.front().string(), s.header.modality));
        continue;
      }
      ManifestRow row;
      row.modality = modality;
      const std::string who =
          !s.header.patient_id.empty() ? s.header.patient_id : s.header.study_uid;
      if (!who.empty()) row.group = "dicom:" + who;
      const bool volume = modality == "ct" || modality == "mri";
      if (!volume || s.files.size() == 1) {
        for (const auto& f : s.files) {
          row.path = f;
          out.rows.push_back(row);
          out.ids.push_back({s.header.patient_id, s.header.study_uid});
        }
      } else {
        row.path = series.size() == 1 ? dir : dicom::series_ref(dir, s.id);
        out.rows.push_back(row);
        out.ids.push_back({s.header.patient_id, s.header.study_uid});
      }
    }
  }
  return out;
}

}  // namespace m3ret::data::importer
