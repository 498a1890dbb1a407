#include "data/reader.h"

#include <cctype>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "core/config.h"
#include "core/error.h"
#include "data/dicom.h"
#include "data/integrity.h"
#include "data/isolate.h"
#include "data/pipelines.h"

namespace m3ret::data {

namespace {

namespace stdfs = std::filesystem;

// Decodes and preprocesses `path` into s.pixels and s.C/T/H/W.
void decode(const stdfs::path& path, const PreprocessConfig& cfg, Sample& s) {
  if (s.modality == "ct" || s.modality == "mri") {
    pipeline::volume(path, s.modality, cfg, s);
  } else if (s.modality == "endoscopy") {
    pipeline::endoscopy(path, cfg, s);
  } else if (s.modality == "xray" || s.modality == "ultrasound" || s.modality == "other") {
    pipeline::grey_image(path, cfg, s);
  } else {
    throw InputError(path.string(), fmt::format("unknown modality '{}'", s.modality));
  }
}

// What GDCM decodes: a folder (DICOM series), "FOLDER#ID", a .dcm file or a
// file with the Part-10 "DICM" marker.
bool is_dicom_input(const stdfs::path& path) {
  std::error_code ec;
  stdfs::path dir;
  std::string id;
  if (stdfs::is_directory(path, ec) || dicom::split_series_ref(path, dir, id)) return true;
  std::string ext = path.extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ext == ".dcm" || ext == ".dicom") return true;
  if (!integrity::not_a_regular_file(path).empty()) return false;  // never open a FIFO to look
  char head[132] = {0};
  std::ifstream in(path, std::ios::binary);
  in.read(head, sizeof(head));
  return in.gcount() == 132 && std::memcmp(head + 128, "DICM", 4) == 0;
}

// decode_isolated()'s task: decodes args' file (path, modality, the preprocessing as TOML, and
// whether videos are stored whole) and returns the shape and pixels as bytes.
std::string decode_task(const std::string& args) {
  const std::vector<std::string> a = isolate::unpack(args);
  if (a.size() != 4) throw Error("internal error: decode request of " + std::to_string(a.size()));
  config::Document doc;
  doc.add_text(a[2], "the preprocessing settings of a decode request");
  PreprocessConfig cfg;
  doc.bind("", cfg);
  cfg.stored_video = a[3] == "1";
  Sample s;
  s.modality = a[1];
  decode(a[0], cfg, s);
  std::string out(4 * sizeof(int64_t), '\0');
  const int64_t shape[4] = {s.C, s.T, s.H, s.W};
  std::memcpy(out.data(), shape, sizeof(shape));
  return out.append(s.pixels.begin(), s.pixels.end());
}

// decode() in a child process (data/isolate.h): shape and pixels come back as bytes.
void decode_isolated(const stdfs::path& path, const PreprocessConfig& cfg, Sample& s) {
  PreprocessConfig settings = cfg;
  const std::string bytes =
      isolate::run(path.string(), decode_task,
                   isolate::pack({path.string(), s.modality, config::to_toml(settings),
                                  cfg.stored_video ? "1" : "0"}),
                   isolate::Limits{cfg.decode_timeout_s, cfg.decode_memory_mb});
  int64_t shape[4];
  if (bytes.size() < sizeof(shape))
    throw Error(fmt::format("{}: short result from the decoder", path.string()));
  std::memcpy(shape, bytes.data(), sizeof(shape));
  s.C = shape[0], s.T = shape[1], s.H = shape[2], s.W = shape[3];
  s.pixels.assign(bytes.begin() + sizeof(shape), bytes.end());
}

}  // namespace

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
  s.dataset = row.dataset;
  s.source = path.string();
  if (is_dicom_input(path)) {
    decode_isolated(path, cfg, s);
  } else {
    isolate::LibraryScope scope;  // no decoding child forks while this thread is inside ITK
    decode(path, cfg, s);
  }
  if (static_cast<int64_t>(s.pixels.size()) != s.numel()) {
    throw Error(fmt::format("{}: internal error: {} pixels for shape [{}, {}, {}, {}]",
                            path.string(), s.pixels.size(), s.C, s.T, s.H, s.W));
  }
  return s;
}

}  // namespace m3ret::data
