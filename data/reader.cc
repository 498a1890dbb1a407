#include "data/reader.h"

#include <fmt/format.h>

#include "core/error.h"
#include "data/pipelines.h"

namespace m3ret::data {

Sample read_sample(const ManifestRow& row, const std::filesystem::path& manifest_dir,
                   const PreprocessConfig& cfg) {
  const std::filesystem::path path =
      (row.path.is_absolute() ? row.path : manifest_dir / row.path).lexically_normal();
  Sample s;
  s.id = sample_id(row, manifest_dir);
  s.modality = row.modality;
  s.labels = row.labels;
  s.group = row.group;
  s.split = row.split;
  s.source = path.string();
  if (row.modality == "ct" || row.modality == "mri") {
    pipeline::volume(path, row.modality, cfg, s);
  } else if (row.modality == "endoscopy") {
    pipeline::endoscopy(path, cfg, s);
  } else if (row.modality == "xray" || row.modality == "ultrasound" || row.modality == "other") {
    pipeline::grey_image(path, cfg, s);
  } else {
    throw InputError(path.string(), fmt::format("unknown modality '{}'", row.modality));
  }
  if (static_cast<int64_t>(s.pixels.size()) != s.numel()) {
    throw Error(fmt::format("{}: internal error: {} pixels for shape [{}, {}, {}, {}]", path.string(),
                            s.pixels.size(), s.C, s.T, s.H, s.W));
  }
  return s;
}

}  // namespace m3ret::data
