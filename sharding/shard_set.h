// Read access to a shard folder written by `m3ret shard` (format in
// docs/formats.md): SHARDS/index.json + SHARDS/<modality>/shard-NNNNN.h5.
//
// Samples are addressed per sample group (data/sample.h: a modality, or
// endoscopy-image for endoscopy still images) by an index in [0, size(group)),
// in index.json order (shard by shard, row by row), which does not depend on
// the number of ranks that wrote the shards. All samples of one group have the
// same shape [C, T, H, W]; the API calls a group "modality" where it is one. Videos are stored as more frames (stored_T) than a
// read returns: a read gives a clip of T frames at `stride` of them, the fixed
// centre clip (read_pixels) or one starting at a given frame (read_clip).
//
// Thread safety: read() may be called from several threads at once (HDF5
// calls are serialised internally; inflating and copying happen outside the
// lock where possible).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/sample.h"

namespace m3ret::sharding {

struct SampleMeta {
  std::string id;
  std::vector<std::string> labels;
  std::string group;
  std::string split;
  std::string source;
  std::string dataset;  // the manifest's dataset column ("" = none)
};

struct ModalityInfo {
  std::string name;      // the sample group (data::group_names())
  std::string modality;  // its modality (data::group_modality(name))
  int64_t count = 0;
  int64_t C = 0, T = 0, H = 0, W = 0;  // shape of every sample as read (T = clip frames)
  int64_t stored_T = 0;                // frames stored per sample (0 or T for anything but video)
  int64_t stride = 1;                  // stored frames between two frames of a clip
  // Valid clip starts, stored_T - (T - 1) * stride (1: no choice).
  int64_t clip_starts() const { return (stored_T > 0 ? stored_T : T) - (T - 1) * stride; }
  int64_t centre_start() const { return (clip_starts() - 1) / 2; }
};

// Shard files' metadata and chunk indexes are read in a forked child first
// (libhdf5 trusts what a file declares): one file within a time limit of
// base_timeout_s plus 1 s per 16 MB of file and a memory limit of 4096 MB plus
// four times its size (read_shard_metadata); a shard folder's files in one child
// within base_timeout_s plus 1 s per 10 files (ShardSet::open, check_shards in
// shard_format.h). A child that runs out of them, or crashes, is an error naming
// the file.
struct ShardReadLimits {
  int64_t base_timeout_s = 10;
};

class ShardSet;
// The dataset of every element of `pool` (group -> sample indices), for
// DistributedSampler's dataset weights.
std::map<std::string, std::vector<std::string>> pool_datasets(
    const ShardSet& shards, const std::map<std::string, std::vector<int64_t>>& pool);

class ShardSet {
 public:
  // Opens SHARDS/index.json and checks format name/version and that every
  // listed shard exists and its metadata is valid (read first in a forked child
  // with `limits`). Throws m3ret::Error naming the file on any problem.
  static std::unique_ptr<ShardSet> open(const std::filesystem::path& dir,
                                        const ShardReadLimits& limits = {});
  virtual ~ShardSet() = default;

  // Sample groups present, in a fixed order (data::group_names() order).
  virtual const std::vector<ModalityInfo>& modalities() const = 0;
  virtual const ModalityInfo& info(const std::string& modality) const = 0;  // throws if absent
  bool has(const std::string& modality) const;
  // The groups present whose modality is `modality` (endoscopy: its videos and
  // its still images), in modalities() order; empty if none.
  std::vector<std::string> groups_of(const std::string& modality) const;

  // Metadata of sample `index` of `modality` (kept in memory: cheap).
  virtual const SampleMeta& meta(const std::string& modality, int64_t index) const = 0;
  // Pixels of one sample, its centre clip for a video (fixed: what embedding
  // uses): out must hold C*T*H*W bytes.
  virtual void read_pixels(const std::string& modality, int64_t index, uint8_t* out) const = 0;
  // The clip of T frames at `stride` starting at stored frame `start`, in
  // [0, clip_starts()) (throws m3ret::Error outside it). This default serves
  // sets without a choice of clip (clip_starts() == 1) through read_pixels.
  virtual void read_clip(const std::string& modality, int64_t index, int64_t start,
                         uint8_t* out) const;
  // Whole sample (pixels + metadata; the centre clip of a video); its
  // `modality` is the group's modality.
  data::Sample read(const std::string& modality, int64_t index) const;

  // Sorted label vocabulary over all modalities (from index.json).
  virtual const std::vector<std::string>& label_vocabulary() const = 0;
};

}  // namespace m3ret::sharding
