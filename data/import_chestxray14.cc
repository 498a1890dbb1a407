// NIH ChestX-ray14: Data_Entry_2017.csv (or its v2020 revision) lists every
// image with its findings and patient; images live in images_NNN/ or
// images_NNN/images/; train_val_list.txt and test_list.txt are the official
// patient-disjoint split.
#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/csv.h"
#include "data/import_util.h"
#include "data/sample.h"

namespace m3ret::data::importer {

namespace stdfs = std::filesystem;

namespace {

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r") - a + 1);
}

std::set<std::string> read_list(const stdfs::path& file) {
  std::set<std::string> names;
  std::istringstream in(fs::read_file(file));
  for (std::string line; std::getline(in, line);) {
    line = trim(line);
    if (!line.empty()) names.insert(line);
  }
  return names;
}

}  // namespace

ImportResult chestxray14(const ImportOptions& opts) {
  const stdfs::path entries =
      find_first(opts.root, {"Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv"});
  if (entries.empty()) {
    throw Error(
        fmt::format("import chestxray14: Data_Entry_2017.csv (or Data_Entry_2017_v2020.csv) "
                    "not found in {}",
                    opts.root.string()));
  }
  const auto records = csv::parse(fs::read_file(entries), entries.string());
  if (records.empty()) throw Error(fmt::format("{}:1: empty file", entries.string()));
  const auto& header = records.front().fields;
  auto column = [&](const std::string& name) {
    auto it = std::find_if(header.begin(), header.end(),
                           [&](const std::string& h) { return trim(h) == name; });
    if (it == header.end()) {
      throw Error(
          fmt::format("{}:1: no column '{}' (expected Image Index, Finding Labels, Patient ID)",
                      entries.string(), name));
    }
    return static_cast<size_t>(it - header.begin());
  };
  const size_t c_image = column("Image Index"), c_labels = column("Finding Labels"),
               c_patient = column("Patient ID");

  ImportResult out;
  // Image files by name, wherever they are under the root (images_001/images/...).
  std::map<std::string, stdfs::path> images;
  for (const auto& f : files_under(opts.root, out.skipped)) {
    if (lower_name(f).size() > 4 &&
        lower_name(f).compare(lower_name(f).size() - 4, 4, ".png") == 0) {
      images.emplace(f.filename().string(), f);
    }
  }
  std::set<std::string> train, test;
  if (auto p = find_first(opts.root, {"train_val_list.txt"}); !p.empty()) train = read_list(p);
  if (auto p = find_first(opts.root, {"test_list.txt"}); !p.empty()) test = read_list(p);

  const size_t needed = std::max({c_image, c_labels, c_patient}) + 1;
  for (size_t r = 1; r < records.size(); ++r) {
    const auto& f = records[r].fields;
    if (f.size() < needed) {
      throw Error(fmt::format("{}:{}: expected at least {} fields, got {}", entries.string(),
                              records[r].line, needed, f.size()));
    }
    const std::string name = trim(f[c_image]);
    auto it = images.find(name);
    if (it == images.end()) {
      out.skipped.push_back(fmt::format("{}: listed in {} line {} but not found under the root",
                                        name, entries.filename().string(), records[r].line));
      continue;
    }
    ManifestRow row;
    row.path = it->second;
    row.modality = opts.modality.empty() ? "xray" : opts.modality;
    for (const auto& label : split_labels(f[c_labels])) row.labels.push_back(trim(label));
    row.group = "chestxray14:" + trim(f[c_patient]);
    row.split = test.count(name) ? "test" : train.count(name) ? "train" : "";
    out.rows.push_back(std::move(row));
  }
  return out;
}

}  // namespace m3ret::data::importer
