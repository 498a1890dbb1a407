#include "sharding/shard_index.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"
#include "data/sample.h"
#include "sharding/shard_format.h"

namespace m3ret::sharding {

void to_json(nlohmann::json& j, const ShardEntry& e) {
  j = nlohmann::json{{"file", e.file},
                     {"modality", e.modality},
                     {"shard", e.shard},
                     {"count", e.count},
                     {"rows", e.rows},
                     {"first_row", e.first_row},
                     {"shape", e.shape},
                     {"clip", e.clip},
                     {"checksum", e.checksum},
                     {"labels", e.labels},
                     {"rejected_sources", e.rejected_sources},
                     {"rejected_reasons", e.rejected_reasons}};
}

void from_json(const nlohmann::json& j, ShardEntry& e) {
  j.at("file").get_to(e.file);
  j.at("modality").get_to(e.modality);
  j.at("shard").get_to(e.shard);
  j.at("count").get_to(e.count);
  j.at("rows").get_to(e.rows);
  j.at("first_row").get_to(e.first_row);
  j.at("shape").get_to(e.shape);
  j.at("clip").get_to(e.clip);
  j.at("checksum").get_to(e.checksum);
  j.at("labels").get_to(e.labels);
  j.at("rejected_sources").get_to(e.rejected_sources);
  j.at("rejected_reasons").get_to(e.rejected_reasons);
}

ShardEntry describe_shard(const std::filesystem::path& dir, const std::string& file) {
  // The sharder describes a shard it has just written, or kept after read_shard_metadata read it
  // in a child: read here without one.
  ShardMetadata md = read_checked_shard_metadata(dir / file);
  ShardEntry e;
  e.file = file;
  e.modality = md.modality;
  auto stem = std::filesystem::path(file).stem().string();  // shard-00012
  auto dash = stem.rfind('-');
  try {
    e.shard = dash == std::string::npos ? 0 : std::stoll(stem.substr(dash + 1));
  } catch (const std::exception&) {
    e.shard = 0;
  }
  e.count = md.count;
  e.rows = md.rows;
  e.first_row = md.first_row;
  e.shape = {md.C, md.T, md.H, md.W};
  e.clip = {md.clip_frames, md.clip_stride};
  e.checksum = fs::checksum_file(dir / file);
  std::set<std::string> labels;
  for (const auto& s : md.samples) labels.insert(s.labels.begin(), s.labels.end());
  e.labels.assign(labels.begin(), labels.end());
  e.rejected_sources = md.rejected_sources;
  e.rejected_reasons = md.rejected_reasons;
  return e;
}

nlohmann::json build_index(std::vector<ShardEntry> entries, const nlohmann::json& extra) {
  const auto& names = data::modality_names();
  auto order = [&](const std::string& m) {
    return std::find(names.begin(), names.end(), m) - names.begin();
  };
  std::sort(entries.begin(), entries.end(), [&](const ShardEntry& a, const ShardEntry& b) {
    if (a.modality != b.modality) return order(a.modality) < order(b.modality);
    return a.shard < b.shard;
  });
  nlohmann::json index = extra.is_object() ? extra : nlohmann::json::object();
  index["format"] = kIndexFormat;
  index["format_version"] = kIndexFormatVersion;
  std::set<std::string> vocabulary;
  nlohmann::json mods = nlohmann::json::object();
  int64_t total = 0, rejected = 0;
  for (const auto& e : entries) {
    auto& jm = mods[e.modality];
    if (jm.is_null()) {
      jm = {{"shape", std::vector<int64_t>{0, 0, 0, 0}},
            {"clip", std::vector<int64_t>{0, 1}},
            {"count", 0},
            {"rejected", 0},
            {"shards", nlohmann::json::array()}};
    }
    if (e.count > 0) {
      auto shape = jm["shape"].get<std::vector<int64_t>>();
      if (shape == std::vector<int64_t>{0, 0, 0, 0}) {
        jm["shape"] = e.shape;
        jm["clip"] = e.clip;
      } else if (shape != e.shape || jm["clip"].get<std::vector<int64_t>>() != e.clip) {
        throw Error(fmt::format(
            "{}: '{}' samples of shape [{}], clip [{}] but earlier shards hold [{}], "
            "clip [{}]",
            e.file, e.modality, fmt::join(e.shape, ", "), fmt::join(e.clip, ", "),
            fmt::join(shape, ", "), fmt::join(jm["clip"].get<std::vector<int64_t>>(), ", ")));
      }
    }
    jm["count"] = jm["count"].get<int64_t>() + e.count;
    jm["rejected"] = jm["rejected"].get<int64_t>() + int64_t(e.rejected_sources.size());
    jm["shards"].push_back({{"file", e.file},
                            {"count", e.count},
                            {"rows", e.rows},
                            {"first_row", e.first_row},
                            {"checksum", e.checksum}});
    vocabulary.insert(e.labels.begin(), e.labels.end());
    total += e.count;
    rejected += static_cast<int64_t>(e.rejected_sources.size());
  }
  index["modalities"] = mods;
  index["label_vocabulary"] = std::vector<std::string>(vocabulary.begin(), vocabulary.end());
  index["samples"] = total;
  index["rejected"] = rejected;
  return index;
}

void write_index(const std::filesystem::path& dir, const nlohmann::json& index) {
  fs::write_atomic(dir / "index.json", index.dump(2) + "\n");
}

}  // namespace m3ret::sharding
