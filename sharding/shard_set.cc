#include "sharding/shard_set.h"

#include <zlib.h>

#include <algorithm>
#include <list>
#include <map>
#include <mutex>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "sharding/hdf5_util.h"
#include "sharding/shard_format.h"

namespace m3ret::sharding {

bool ShardSet::has(const std::string& modality) const {
  for (const auto& m : modalities()) {
    if (m.name == modality) return true;
  }
  return false;
}

std::vector<std::string> ShardSet::groups_of(const std::string& modality) const {
  std::vector<std::string> out;
  for (const auto& m : modalities()) {
    if (m.modality == modality) out.push_back(m.name);
  }
  return out;
}

std::map<std::string, std::vector<std::string>> pool_datasets(
    const ShardSet& shards, const std::map<std::string, std::vector<int64_t>>& pool) {
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& [g, indices] : pool) {
    auto& v = out[g];
    for (int64_t i : indices) v.push_back(shards.meta(g, i).dataset);
  }
  return out;
}

void ShardSet::read_clip(const std::string& modality, int64_t index, int64_t start,
                         uint8_t* out) const {
  const ModalityInfo& mi = info(modality);
  if (start != 0 || mi.clip_starts() != 1) {
    throw Error(fmt::format("clip start {} of '{}' sample {}: this set has {} start(s)", start,
                            modality, index, mi.clip_starts()));
  }
  read_pixels(modality, index, out);
}

data::Sample ShardSet::read(const std::string& modality, int64_t index) const {
  const ModalityInfo& mi = info(modality);
  const SampleMeta& m = meta(modality, index);
  data::Sample s;
  s.C = mi.C;
  s.T = mi.T;
  s.H = mi.H;
  s.W = mi.W;
  s.pixels.resize(static_cast<size_t>(s.numel()));
  read_pixels(modality, index, s.pixels.data());
  s.id = m.id;
  s.modality = mi.modality;
  s.labels = m.labels;
  s.group = m.group;
  s.split = m.split;
  s.source = m.source;
  s.dataset = m.dataset;
  return s;
}

namespace {

// Integers of index.json are read as int64; a number beyond that range (a float such as 1e64)
// would be undefined behaviour to convert, so it is refused first, naming the file.
void refuse_numbers_beyond_int64(const nlohmann::json& j, const std::filesystem::path& path) {
  if (j.is_number_float()) {
    const double v = j.get<double>();
    if (!(v > -9.2e18 && v < 9.2e18)) {
      throw Error(fmt::format("{}: number {} is out of range", path.string(), v));
    }
  } else if (j.is_structured()) {
    for (const auto& item : j) refuse_numbers_beyond_int64(item, path);
  }
}

}  // namespace

namespace {

struct Shard {
  std::filesystem::path path;
  int64_t begin = 0;  // first index (within the modality) held by this shard
  int64_t count = 0;
  int64_t compression = 0;
  std::vector<uint32_t> crc;  // [count] pixel_crc: checked on every read
};

struct Modality {
  ModalityInfo info;
  std::vector<Shard> shards;        // non-empty shards only, by begin
  std::vector<SampleMeta> samples;  // [count]
};

// An open shard: the file and its pixels dataset, and how to read chunks.
struct OpenShard {
  h5::Handle file, pixels;
  bool direct = false;  // chunks can be read raw (no filter, or deflate only)
  bool deflate = false;
};

class Hdf5ShardSet : public ShardSet {
 public:
  Hdf5ShardSet(const std::filesystem::path& dir, const ShardReadLimits& limits);
  ~Hdf5ShardSet() override {
    h5::Hdf5Lock lock;
    open_.clear();
  }

  const std::vector<ModalityInfo>& modalities() const override { return infos_; }
  const ModalityInfo& info(const std::string& modality) const override {
    return find(modality).info;
  }
  const SampleMeta& meta(const std::string& modality, int64_t index) const override {
    const Modality& m = find(modality);
    check_index(m, index);
    return m.samples[static_cast<size_t>(index)];
  }
  void read_pixels(const std::string& modality, int64_t index, uint8_t* out) const override {
    read_clip(modality, index, info(modality).centre_start(), out);
  }
  void read_clip(const std::string& modality, int64_t index, int64_t start,
                 uint8_t* out) const override;
  // Throws when the stored chunk of sample `row` does not match its recorded checksum.
  void verify(const Shard& shard, hsize_t row, const uint8_t* stored, size_t bytes) const;
  const std::vector<std::string>& label_vocabulary() const override { return vocabulary_; }

 private:
  const Modality& find(const std::string& modality) const {
    auto it = by_name_.find(modality);
    if (it == by_name_.end()) {
      throw Error(fmt::format("{}: no modality '{}' in the shards", dir_.string(), modality));
    }
    return it->second;
  }
  void check_index(const Modality& m, int64_t index) const {
    if (index < 0 || index >= m.info.count) {
      throw Error(fmt::format("{}: index {} out of range for modality '{}' ({} samples)",
                              dir_.string(), index, m.info.name, m.info.count));
    }
  }
  // All stored frames of a sample: out must hold C * stored_T * H * W bytes.
  void read_stored(const Modality& m, int64_t index, uint8_t* out) const;
  // Lock held. Returns the open shard, opening it (and closing the least
  // recently used one beyond kMaxOpen) as needed.
  OpenShard& open_shard(const Shard& shard) const;

  static constexpr size_t kMaxOpen = 64;

  // Fixed after construction.
  std::filesystem::path dir_;
  std::map<std::string, Modality> by_name_;
  std::vector<ModalityInfo> infos_;
  std::vector<std::string> vocabulary_;

  // Guarded by the HDF5 lock.
  mutable std::map<std::string, OpenShard> open_;  // by path
  mutable std::list<std::string> lru_;             // most recent first
};

Hdf5ShardSet::Hdf5ShardSet(const std::filesystem::path& dir, const ShardReadLimits& limits)
    : dir_(dir) {
  auto index_path = dir / "index.json";
  if (!std::filesystem::is_regular_file(index_path)) {
    throw Error(fmt::format("{}: no index.json (not a shard folder written by `m3ret shard`?)",
                            index_path.string()));
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(fs::read_file(index_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: invalid JSON: {}", index_path.string(), e.what()));
  }
  refuse_numbers_beyond_int64(j, index_path);
  try {
    if (j.value("format", "") != kIndexFormat) {
      throw Error(fmt::format("{}: format is '{}', expected '{}'", index_path.string(),
                              j.value("format", ""), kIndexFormat));
    }
    if (j.value("format_version", int64_t{-1}) != kIndexFormatVersion) {
      throw Error(outdated_shards_message(index_path, j.value("format_version", int64_t{-1}),
                                          kIndexFormatVersion));
    }
    vocabulary_ = j.at("label_vocabulary").get<std::vector<std::string>>();
    const auto& mods = j.at("modalities");
    // Every listed shard's metadata is read in one forked child first (check_shards).
    std::vector<std::filesystem::path> files;
    for (const auto& name : data::group_names()) {
      if (!mods.contains(name)) continue;
      for (const auto& js : mods.at(name).at("shards")) {
        files.push_back(dir / js.at("file").get<std::string>());
      }
    }
    check_shards(dir, files, limits);
    for (const auto& name : data::group_names()) {
      if (!mods.contains(name)) continue;
      const auto& jm = mods.at(name);
      Modality m;
      m.info.name = name;
      m.info.modality = data::group_modality(name);
      auto shape = jm.at("shape").get<std::vector<int64_t>>();
      if (shape.size() != 4) {
        throw Error(
            fmt::format("{}: modality '{}' shape needs 4 values", index_path.string(), name));
      }
      auto clip = jm.at("clip").get<std::vector<int64_t>>();
      if (clip.size() != 2) {
        throw Error(
            fmt::format("{}: modality '{}' clip needs 2 values", index_path.string(), name));
      }
      m.info.C = shape[0];
      m.info.stored_T = shape[1];
      m.info.T = clip[0];
      m.info.stride = clip[1];
      m.info.H = shape[2];
      m.info.W = shape[3];
      int64_t listed = jm.at("count").get<int64_t>();
      for (const auto& js : jm.at("shards")) {
        Shard s;
        s.path = dir / js.at("file").get<std::string>();
        int64_t count = js.at("count").get<int64_t>();
        ShardMetadata md = read_checked_shard_metadata(s.path);
        if (md.modality != name || md.count != count) {
          throw Error(fmt::format("{}: holds {} '{}' samples, index.json lists {} '{}'",
                                  s.path.string(), md.count, md.modality, count, name));
        }
        if (count == 0) continue;
        if (md.C != m.info.C || md.T != m.info.stored_T || md.H != m.info.H || md.W != m.info.W ||
            md.clip_frames != m.info.T || md.clip_stride != m.info.stride) {
          throw Error(
              fmt::format("{}: sample shape [{}, {}, {}, {}], clip [{}, {}] differs from "
                          "index.json's [{}, {}, {}, {}], clip [{}, {}]",
                          s.path.string(), md.C, md.T, md.H, md.W, md.clip_frames, md.clip_stride,
                          m.info.C, m.info.stored_T, m.info.H, m.info.W, m.info.T, m.info.stride));
        }
        s.begin = static_cast<int64_t>(m.samples.size());
        s.count = count;
        s.compression = md.compression;
        s.crc = std::move(md.pixel_crc);
        m.shards.push_back(std::move(s));
        for (auto& sm : md.samples) m.samples.push_back(std::move(sm));
      }
      m.info.count = static_cast<int64_t>(m.samples.size());
      if (m.info.count != listed) {
        throw Error(fmt::format("{}: modality '{}' lists count {} but its shards hold {}",
                                index_path.string(), name, listed, m.info.count));
      }
      if (m.info.count == 0) continue;
      if (m.info.T < 1 || m.info.stride < 1 || m.info.clip_starts() < 1) {
        throw Error(fmt::format("{}: modality '{}' clip [{}, {}] does not fit its {} stored frames",
                                index_path.string(), name, m.info.T, m.info.stride,
                                m.info.stored_T));
      }
      infos_.push_back(m.info);
      by_name_.emplace(name, std::move(m));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: malformed index: {}", index_path.string(), e.what()));
  }
}

OpenShard& Hdf5ShardSet::open_shard(const Shard& shard) const {
  const std::string key = shard.path.string();
  auto it = open_.find(key);
  if (it != open_.end()) {
    lru_.remove(key);
    lru_.push_front(key);
    return it->second;
  }
  while (open_.size() >= kMaxOpen && !lru_.empty()) {
    open_.erase(lru_.back());
    lru_.pop_back();
  }
  OpenShard os;
  os.file = h5::check(H5Fopen(shard.path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open the file",
                      shard.path);
  os.pixels =
      h5::check(H5Dopen2(os.file.get(), "pixels", H5P_DEFAULT), "open dataset pixels", shard.path);
  h5::Handle dcpl =
      h5::check(H5Dget_create_plist(os.pixels.get()), "read dataset pixels", shard.path);
  if (H5Pget_layout(dcpl.get()) == H5D_CHUNKED) {
    int nfilters = H5Pget_nfilters(dcpl.get());
    unsigned flags = 0;
    size_t nelmts = 0;
    unsigned values[8];
    char name[64];
    unsigned config = 0;
    hsize_t chunk[5] = {0, 0, 0, 0, 0};
    bool one_per_sample = H5Pget_chunk(dcpl.get(), 5, chunk) == 5 && chunk[0] == 1;
    if (nfilters == 0) {
      os.direct = one_per_sample;
    } else if (nfilters == 1) {
      nelmts = 8;
      H5Z_filter_t id =
          H5Pget_filter2(dcpl.get(), 0, &flags, &nelmts, values, sizeof(name), name, &config);
      os.direct = one_per_sample && id == H5Z_FILTER_DEFLATE;
      os.deflate = os.direct;
    }
  }
  lru_.push_front(key);
  return open_.emplace(key, std::move(os)).first->second;
}

void Hdf5ShardSet::read_clip(const std::string& modality, int64_t index, int64_t start,
                             uint8_t* out) const {
  const Modality& m = find(modality);
  check_index(m, index);
  const ModalityInfo& mi = m.info;
  if (start < 0 || start >= mi.clip_starts()) {
    throw Error(fmt::format("{}: clip start {} of '{}' sample {} is outside [0, {})", dir_.string(),
                            start, modality, index, mi.clip_starts()));
  }
  if (mi.stored_T == mi.T) return read_stored(m, index, out);
  std::vector<uint8_t> stored(static_cast<size_t>(mi.C * mi.stored_T * mi.H * mi.W));
  read_stored(m, index, stored.data());
  data::copy_clip(stored.data(), mi.C, mi.stored_T, mi.H * mi.W, start, mi.T, mi.stride, out);
}

void Hdf5ShardSet::read_stored(const Modality& m, int64_t index, uint8_t* out) const {
  auto it = std::upper_bound(m.shards.begin(), m.shards.end(), index,
                             [](int64_t i, const Shard& s) { return i < s.begin; });
  const Shard& shard = *std::prev(it);
  const hsize_t row = static_cast<hsize_t>(index - shard.begin);
  const size_t numel = static_cast<size_t>(m.info.C * m.info.stored_T * m.info.H * m.info.W);

  std::vector<uint8_t> compressed;
  {
    h5::Hdf5Lock lock;
    OpenShard& os = open_shard(shard);
    hsize_t offset[5] = {row, 0, 0, 0, 0};
    hsize_t bytes = 0;
    uint32_t mask = 0;
    if (!os.direct) {  // any other layout/filters: check the stored chunk, then let HDF5 decode
      h5::check_status(H5Dget_chunk_storage_size(os.pixels.get(), offset, &bytes),
                       fmt::format("find the chunk of sample {}", row), shard.path);
      compressed.resize(bytes);
      h5::check_status(
          H5Dread_chunk(os.pixels.get(), H5P_DEFAULT, offset, &mask, compressed.data()),
          fmt::format("read the chunk of sample {}", row), shard.path);
      verify(shard, row, compressed.data(), compressed.size());
      hsize_t count[5] = {1, hsize_t(m.info.C), hsize_t(m.info.stored_T), hsize_t(m.info.H),
                          hsize_t(m.info.W)};
      h5::Handle fspace = h5::check(H5Dget_space(os.pixels.get()), "read pixels", shard.path);
      h5::check_status(
          H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, offset, nullptr, count, nullptr),
          "select a sample", shard.path);
      h5::Handle mspace = h5::check(H5Screate_simple(5, count, nullptr), "read pixels", shard.path);
      h5::check_status(
          H5Dread(os.pixels.get(), H5T_NATIVE_UINT8, mspace.get(), fspace.get(), H5P_DEFAULT, out),
          fmt::format("read sample {}", row), shard.path);
      return;
    }
    h5::check_status(H5Dget_chunk_storage_size(os.pixels.get(), offset, &bytes),
                     fmt::format("find the chunk of sample {}", row), shard.path);
    if (!os.deflate) {
      if (bytes != numel) {
        throw Error(fmt::format("{}: chunk of sample {} has {} bytes, expected {}",
                                shard.path.string(), row, bytes, numel));
      }
      h5::check_status(H5Dread_chunk(os.pixels.get(), H5P_DEFAULT, offset, &mask, out),
                       fmt::format("read the chunk of sample {}", row), shard.path);
      verify(shard, row, out, numel);
      return;
    }
    compressed.resize(bytes);
    h5::check_status(H5Dread_chunk(os.pixels.get(), H5P_DEFAULT, offset, &mask, compressed.data()),
                     fmt::format("read the chunk of sample {}", row), shard.path);
    if (mask & 1u) {  // the (optional) deflate filter was skipped for this chunk
      verify(shard, row, compressed.data(), compressed.size());
      if (bytes != numel) {
        throw Error(fmt::format("{}: raw chunk of sample {} has {} bytes, expected {}",
                                shard.path.string(), row, bytes, numel));
      }
      std::copy(compressed.begin(), compressed.end(), out);
      return;
    }
  }
  // Check and inflate outside the HDF5 lock, so that workers do it in parallel.
  verify(shard, row, compressed.data(), compressed.size());
  uLongf size = static_cast<uLongf>(numel);
  int rc = uncompress(out, &size, compressed.data(), static_cast<uLong>(compressed.size()));
  if (rc != Z_OK || size != numel) {
    throw Error(fmt::format("{}: corrupt chunk of sample {} (zlib error {}, {} of {} bytes)",
                            shard.path.string(), row, rc, size, numel));
  }
}

void Hdf5ShardSet::verify(const Shard& shard, hsize_t row, const uint8_t* stored,
                          size_t bytes) const {
  if (chunk_crc(stored, bytes) == shard.crc[row]) return;
  throw Error(
      fmt::format("{}: the pixels of sample {} do not match their checksum (the shard was modified "
                  "or damaged; run `m3ret shard` again to rewrite it)",
                  shard.path.string(), row));
}

}  // namespace

std::unique_ptr<ShardSet> ShardSet::open(const std::filesystem::path& dir,
                                         const ShardReadLimits& limits) {
  return std::make_unique<Hdf5ShardSet>(dir, limits);
}

}  // namespace m3ret::sharding
