#include "eval/label_map.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/csv.h"

namespace m3ret::eval {

const std::string& LabelMap::apply(const std::string& modality, const std::string& label) const {
  auto it = entries.find({modality, label});
  if (it == entries.end()) it = entries.find({std::string(), label});
  return it == entries.end() ? label : it->second;
}

LabelMap parse_label_map(const std::string& text, const std::string& origin) {
  const bool bom = text.rfind("\xEF\xBB\xBF", 0) == 0;
  const auto records = csv::parse(bom ? text.substr(3) : text, origin);
  if (records.empty())
    throw Error(fmt::format("{}: empty label map (expected a header label,concept)", origin));
  const auto& header = records.front().fields;
  auto column = [&](const std::string& name) -> int64_t {
    auto it = std::find(header.begin(), header.end(), name);
    return it == header.end() ? -1 : it - header.begin();
  };
  const int64_t lc = column("label"), cc = column("concept"), mc = column("modality");
  for (auto [name, c] : {std::pair{"label", lc}, std::pair{"concept", cc}})
    if (c < 0)
      throw Error(
          fmt::format("{}:{}: no '{}' column in the header (expected label,concept[,modality])",
                      origin, records.front().line, name));
  LabelMap map;
  for (size_t r = 1; r < records.size(); ++r) {
    const auto& rec = records[r];
    auto field = [&](int64_t c) {
      return c >= 0 && c < static_cast<int64_t>(rec.fields.size()) ? rec.fields[c] : std::string();
    };
    const std::string label = field(lc), concept_ = field(cc), modality = field(mc);
    if (label.empty() || concept_.empty())
      throw Error(
          fmt::format("{}:{}: empty {}", origin, rec.line, label.empty() ? "label" : "concept"));
    if (!map.entries.emplace(std::pair{modality, label}, concept_).second)
      throw Error(
          fmt::format("{}:{}: label '{}' is mapped twice for {}", origin, rec.line, label,
                      modality.empty() ? std::string("any modality") : "modality " + modality));
  }
  return map;
}

LabelMap read_label_map(const std::filesystem::path& path) {
  std::string text;
  try {
    text = fs::read_file(path);
  } catch (const Error& e) {
    throw Error(fmt::format("eval.label_map: {}", e.what()));
  }
  return parse_label_map(text, path.string());
}

std::vector<std::vector<std::string>> relevance_labels(const EmbeddingSet& set, const LabelMap& map,
                                                       const std::vector<std::string>& exclude) {
  const std::set<std::string> dropped(exclude.begin(), exclude.end());
  std::vector<std::vector<std::string>> out(set.labels.size());
  for (size_t i = 0; i < set.labels.size(); ++i) {
    std::set<std::string> ls;
    for (const auto& l : set.labels[i]) {
      const std::string& c = map.apply(set.modality[i], l);
      if (!dropped.count(c)) ls.insert(c);
    }
    out[i].assign(ls.begin(), ls.end());
  }
  return out;
}

}  // namespace m3ret::eval
