#include "data/dicom.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <gdcmReader.h>
#include <gdcmStringFilter.h>
#include <itkGDCMSeriesFileNames.h>

#include "core/error.h"
#include "data/integrity.h"

namespace m3ret::data::dicom {

namespace stdfs = std::filesystem;

namespace {

std::string trim(std::string s) {
  const char* ws = " \t\r\n";
  while (!s.empty() && (s.back() == '\0' || std::string(ws).find(s.back()) != std::string::npos)) {
    s.pop_back();
  }
  const size_t first = s.find_first_not_of(ws);
  return first == std::string::npos ? "" : s.substr(first);
}

}  // namespace

Header read_header(const stdfs::path& file) {
  const std::string cut = integrity::dicom_meta_error(file);
  if (!cut.empty()) throw InputError(file.string(), cut);
  gdcm::Reader reader;
  reader.SetFileName(file.c_str());
  const std::set<gdcm::Tag> skip;
  if (!reader.ReadUpToTag(gdcm::Tag(0x7fe0, 0x0010), skip)) {
    throw InputError(file.string(), "not a DICOM file (GDCM cannot parse its header)");
  }
  gdcm::StringFilter sf;
  sf.SetFile(reader.GetFile());
  auto tag = [&](uint16_t g, uint16_t e) { return trim(sf.ToString(gdcm::Tag(g, e))); };
  Header h;
  h.modality = tag(0x0008, 0x0060);
  h.patient_id = tag(0x0010, 0x0020);
  h.study_uid = tag(0x0020, 0x000D);
  h.series_uid = tag(0x0020, 0x000E);
  h.description = tag(0x0008, 0x103E);
  const std::string frames = tag(0x0028, 0x0008);
  if (!frames.empty()) {
    try {
      h.frames = std::max<int64_t>(1, std::stoll(frames));
    } catch (const std::exception&) {
      throw InputError(file.string(), fmt::format("bad Number of Frames (0028,0008) '{}'", frames));
    }
  }
  return h;
}

namespace {

// Series as they come back from the listing child (list_series): fields as "LENGTH:BYTES"
// (paths are bytes, not necessarily UTF-8).
void put(std::string& out, const std::string& field) {
  out += std::to_string(field.size()) + ':' + field;
}

std::string encode(const std::vector<Series>& all) {
  std::string out;
  put(out, std::to_string(all.size()));
  for (const auto& s : all) {
    put(out, s.id);
    put(out, std::to_string(s.files.size()));
    for (const auto& f : s.files) put(out, f.string());
    const Header& h = s.header;
    for (const auto* f : {&h.modality, &h.patient_id, &h.study_uid, &h.series_uid, &h.description})
      put(out, *f);
    put(out, std::to_string(h.frames));
  }
  return out;
}

std::vector<Series> decode(const std::string& bytes, const stdfs::path& dir) {
  size_t at = 0;
  auto field = [&]() -> std::string {
    const size_t colon = bytes.find(':', at);
    if (colon == std::string::npos || colon == at || colon - at > 19)
      throw Error(fmt::format("{}: bad series list from the listing process", dir.string()));
    const size_t n = std::stoull(bytes.substr(at, colon - at));
    if (n > bytes.size() - colon - 1)
      throw Error(fmt::format("{}: bad series list from the listing process", dir.string()));
    at = colon + 1 + n;
    return bytes.substr(colon + 1, n);
  };
  std::vector<Series> out(std::stoull(field()));
  for (auto& s : out) {
    s.id = field();
    s.files.resize(std::stoull(field()));
    for (auto& f : s.files) f = field();
    Header& h = s.header;
    for (auto* f : {&h.modality, &h.patient_id, &h.study_uid, &h.series_uid, &h.description})
      *f = field();
    h.frames = std::stoll(field());
  }
  return out;
}

// GDCM scans every file of the folder and aborts on some cut files, and
// would block on a FIFO: check first. Returns the number of files GDCM would open.
size_t check_folder(const stdfs::path& dir) {
  std::error_code ec;
  size_t files = 0;
  for (auto it = stdfs::directory_iterator(dir, ec); !ec && it != stdfs::directory_iterator();
       it.increment(ec)) {
    const stdfs::path& entry = it->path();
    std::error_code type_ec;
    if (stdfs::is_directory(entry, type_ec)) continue;
    std::string why = integrity::not_a_regular_file(entry);
    if (why == "does not exist") continue;  // a dangling link: nothing GDCM could open
    if (why.empty()) why = integrity::dicom_meta_error(entry);
    if (!why.empty()) {
      throw InputError(dir.string(), fmt::format("{}: {}", entry.filename().string(), why));
    }
    ++files;
  }
  if (ec) throw InputError(dir.string(), "cannot list the folder: " + ec.message());
  return files;
}

}  // namespace

std::vector<Series> list_series(const stdfs::path& dir, const isolate::Limits& limits) {
  // GDCM reads every file of the folder whole, trusting the lengths its data elements declare
  // (a 1.7 KB mutated file made it allocate 1.8 GB: fuzz_image), and aborts on some: it lists
  // the series in a child process (data/isolate.h); a folder without files needs none.
  if (check_folder(dir) == 0) return {};
  const std::string bytes = isolate::run(
      dir.string(), [](const std::string& folder) { return encode(list_series_here(folder)); },
      dir.string(), limits);
  return decode(bytes, dir);
}

std::vector<Series> list_series_here(const stdfs::path& dir) {
  check_folder(dir);
  auto names = itk::GDCMSeriesFileNames::New();
  names->SetUseSeriesDetails(true);
  names->SetDirectory(dir.string());
  std::vector<Series> out;
  for (const auto& id : names->GetSeriesUIDs()) {
    Series s;
    s.id = id;
    for (const auto& f : names->GetFileNames(id)) s.files.emplace_back(f);
    if (s.files.empty()) continue;
    s.header = read_header(s.files.front());
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(), [](const Series& a, const Series& b) {
    return a.files.size() != b.files.size() ? a.files.size() > b.files.size() : a.id < b.id;
  });
  return out;
}

std::string modality_for(const std::string& code) {
  static const std::vector<std::pair<std::string, std::vector<std::string>>> table = {
      {"ct", {"CT"}},
      {"mri", {"MR"}},
      {"xray", {"CR", "DX", "DR", "MG", "RG", "PX", "IO"}},
      {"ultrasound", {"US"}},
      {"endoscopy", {"ES", "GM", "XC"}},
  };
  for (const auto& [modality, codes] : table) {
    if (std::find(codes.begin(), codes.end(), code) != codes.end()) return modality;
  }
  return "";
}

stdfs::path series_ref(const stdfs::path& dir, const std::string& id) {
  return stdfs::path(dir.string() + "#" + id);
}

}  // namespace m3ret::data::dicom
