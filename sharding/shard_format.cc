#include "sharding/shard_format.h"

#include <zlib.h>

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "data/isolate.h"
#include "sharding/hdf5_util.h"

namespace m3ret::sharding {

namespace {

// The metadata of the shard at `path`, opened with the file access properties `fapl`. Caller
// holds the HDF5 lock. With `chunk_index`, every sample's chunk is also looked up in the chunk
// index (without reading it).
ShardMetadata read_metadata(const std::filesystem::path& path, hid_t fapl, bool chunk_index) {
  using h5::check;
  using h5::Handle;
  Handle file = check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl), "open the file", path);
  hid_t f = file.get();
  ShardMetadata m;
  std::string format = h5::read_string_attr(f, "format", path);
  if (format != kShardFormat) {
    throw Error(
        fmt::format("{}: format is '{}', expected '{}'", path.string(), format, kShardFormat));
  }
  auto version = h5::read_int_attr(f, "format_version", path);
  if (version.size() != 1)
    throw Error(fmt::format("{}: attribute 'format_version' needs 1 value", path.string()));
  if (version[0] != kShardFormatVersion) {
    throw Error(outdated_shards_message(path, version[0], kShardFormatVersion));
  }
  m.modality = h5::read_string_attr(f, "modality", path);
  auto shape = h5::read_int_attr(f, "shape", path);
  if (shape.size() != 4)
    throw Error(fmt::format("{}: attribute 'shape' needs 4 values", path.string()));
  m.C = shape[0];
  m.T = shape[1];
  m.H = shape[2];
  m.W = shape[3];
  auto clip = h5::read_int_attr(f, "clip", path);
  if (clip.size() != 2)
    throw Error(fmt::format("{}: attribute 'clip' needs 2 values", path.string()));
  m.clip_frames = clip[0];
  m.clip_stride = clip[1];
  if (m.T > 0 &&
      (m.clip_frames < 1 || m.clip_stride < 1 || (m.clip_frames - 1) * m.clip_stride + 1 > m.T)) {
    throw Error(fmt::format("{}: attribute 'clip' = [{}, {}] does not fit the {} stored frames",
                            path.string(), m.clip_frames, m.clip_stride, m.T));
  }
  m.compression = h5::read_int_attr(f, "compression", path).at(0);
  m.first_row = h5::read_int_attr(f, "first_row", path).at(0);
  m.rows = h5::read_int_attr(f, "rows", path).at(0);
  m.key = h5::read_string_attr(f, "key", path);

  auto ids = h5::read_strings(f, "ids", path);
  auto labels = h5::read_strings(f, "labels", path);
  auto groups = h5::read_strings(f, "groups", path);
  auto splits = h5::read_strings(f, "splits", path);
  auto sources = h5::read_strings(f, "sources", path);
  auto datasets = h5::read_strings(f, "datasets", path);
  m.rejected_sources = h5::read_strings(f, "rejected_sources", path);
  m.rejected_reasons = h5::read_strings(f, "rejected_reasons", path);
  m.count = static_cast<int64_t>(ids.size());
  if (labels.size() != ids.size() || groups.size() != ids.size() || splits.size() != ids.size() ||
      sources.size() != ids.size() || datasets.size() != ids.size()) {
    throw Error(fmt::format("{}: ids/labels/groups/splits/sources/datasets have different lengths",
                            path.string()));
  }
  if (m.rejected_sources.size() != m.rejected_reasons.size()) {
    throw Error(
        fmt::format("{}: rejected_sources/rejected_reasons have different lengths", path.string()));
  }
  if (m.rows != m.count + static_cast<int64_t>(m.rejected_sources.size())) {
    throw Error(fmt::format("{}: rows = {} but {} samples + {} rejects", path.string(), m.rows,
                            m.count, m.rejected_sources.size()));
  }
  Handle ds = check(H5Dopen2(f, "pixels", H5P_DEFAULT), "open dataset pixels", path);
  Handle space = check(H5Dget_space(ds.get()), "read dataset pixels", path);
  hsize_t dims[5] = {0, 0, 0, 0, 0};
  if (H5Sget_simple_extent_ndims(space.get()) != 5) {
    throw Error(fmt::format("{}: dataset 'pixels' is not 5-D", path.string()));
  }
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  if (static_cast<int64_t>(dims[0]) != m.count ||
      (m.count > 0 && (int64_t(dims[1]) != m.C || int64_t(dims[2]) != m.T ||
                       int64_t(dims[3]) != m.H || int64_t(dims[4]) != m.W))) {
    throw Error(fmt::format(
        "{}: dataset 'pixels' has dims [{}, {}, {}, {}, {}], expected [{}, {}, "
        "{}, {}, {}]",
        path.string(), dims[0], dims[1], dims[2], dims[3], dims[4], m.count, m.C, m.T, m.H, m.W));
  }
  m.pixel_crc = h5::read_uint32s(f, "pixel_crc", path);
  if (static_cast<int64_t>(m.pixel_crc.size()) != m.count) {
    throw Error(fmt::format("{}: pixel_crc holds {} checksums for {} samples", path.string(),
                            m.pixel_crc.size(), m.count));
  }
  for (int64_t i = 0; chunk_index && i < m.count; ++i) {
    hsize_t offset[5] = {hsize_t(i), 0, 0, 0, 0}, bytes = 0;
    h5::check_status(H5Dget_chunk_storage_size(ds.get(), offset, &bytes),
                     fmt::format("find the chunk of sample {}", i), path);
  }
  m.samples.resize(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    m.samples[i] =
        SampleMeta{std::move(ids[i]),    split_labels(labels[i]), std::move(groups[i]),
                   std::move(splits[i]), std::move(sources[i]),   std::move(datasets[i])};
  }
  return m;
}

// libhdf5 1.10 trusts what a file declares: on some mutated shards it allocates terabytes or
// reads past its own buffers (fuzz_shard), and on such files it can loop forever (see
// eval/embeddings_file.cc). So shards' metadata and chunk indexes are first read in a forked
// child (data/isolate.h), and only files the child read without error are read here. Limits:
// ShardReadLimits (shard_set.h). Caller holds the HDF5 lock, so no other thread is inside
// libhdf5 at the fork. The child opens the files through the stdio driver: a file this process
// holds open (a ShardSet's reads) is then not matched to the parent's open file, whose
// descriptor the child has closed.
constexpr int64_t kReadBytesPerSecond = int64_t{16} << 20, kReadMemoryBaseMb = 4096;
constexpr int64_t kShardsPerSecond = 10;

// Lock held. The errors read_shard_metadata gives before libhdf5 parses anything.
void check_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw Error(fmt::format("{}: shard file does not exist", path.string()));
  }
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    throw Error(fmt::format("{}: not an HDF5 file", path.string()));
  }
}

uint64_t size_or_zero(const std::filesystem::path& path) {
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  return ec ? 0 : size;
}

// A reading child that crashed or ran out of time or memory: names `name`, not a file.
struct ChildDied : Error {
  using Error::Error;
};

// Lock held. Reads `paths` in one child, within `timeout_s` and `memory_mb`; `name` is what a
// child that died is reported under (ChildDied).
void read_in_child(const std::vector<std::filesystem::path>& paths, const std::string& name,
                   int64_t timeout_s, int64_t memory_mb) {
  data::isolate::Limits limits;
  limits.timeout_s = timeout_s;
  limits.memory_mb = memory_mb;
  limits.task = "reading it with libhdf5";
  limits.timeout_setting = limits.memory_setting = "";
  try {
    std::vector<std::string> args{name};
    for (const auto& path : paths) args.push_back(path.string());
    data::isolate::check(
        name,
        [](const std::string& bytes) {
          const std::vector<std::string> a = data::isolate::unpack(bytes);
          const std::string& what = a.front();
          h5::Handle fapl = h5::check(H5Pcreate(H5P_FILE_ACCESS), "create a property list", what);
          h5::check_status(H5Pset_fapl_stdio(fapl.get()), "set the stdio driver", what);
          for (size_t i = 1; i < a.size(); ++i) (void)read_metadata(a[i], fapl.get(), true);
        },
        data::isolate::pack(args), limits);
  } catch (const InputError& e) {  // killed, crashed, out of memory
    throw ChildDied(fmt::format("{}: {}", name, e.reason()));
  }
}

// Lock held: one file, within base_timeout_s plus 1 s per 16 MB and 4096 MB plus four times
// its size.
void read_file_in_child(const std::filesystem::path& path, const ShardReadLimits& limits) {
  const uint64_t size = size_or_zero(path);
  read_in_child({path}, path.string(),
                limits.base_timeout_s + static_cast<int64_t>(size) / kReadBytesPerSecond,
                kReadMemoryBaseMb + static_cast<int64_t>(4 * (size >> 20)));
}

}  // namespace

ShardMetadata read_shard_metadata(const std::filesystem::path& path,
                                  const ShardReadLimits& limits) {
  h5::Hdf5Lock lock;
  check_file(path);
  read_file_in_child(path, limits);
  return read_metadata(path, H5P_DEFAULT, false);
}

void check_shards(const std::filesystem::path& dir, const std::vector<std::filesystem::path>& paths,
                  const ShardReadLimits& limits) {
  h5::Hdf5Lock lock;
  uint64_t largest = 0;
  for (const auto& path : paths) {
    check_file(path);
    largest = std::max(largest, size_or_zero(path));
  }
  if (paths.empty()) return;
  if (paths.size() == 1) return read_file_in_child(paths.front(), limits);
  try {
    read_in_child(paths, dir.string(),
                  limits.base_timeout_s + static_cast<int64_t>(paths.size()) / kShardsPerSecond,
                  kReadMemoryBaseMb + static_cast<int64_t>(4 * (largest >> 20)));
  } catch (const ChildDied&) {
    // A child that died names only the folder: find the file, one child each.
    for (const auto& path : paths) read_file_in_child(path, limits);
    throw;
  }
}

ShardMetadata read_checked_shard_metadata(const std::filesystem::path& path) {
  h5::Hdf5Lock lock;
  check_file(path);
  return read_metadata(path, H5P_DEFAULT, false);
}

std::string outdated_shards_message(const std::filesystem::path& file, int64_t version,
                                    int64_t current) {
  const char* rel = version < current ? "an older" : "a newer";
  return fmt::format(
      "{}: written by {} m3ret (format_version {}, this build reads {}); run "
      "`m3ret shard --manifest MANIFEST.csv --out SHARDS` again with the manifest and "
      "folder it was made from to rewrite the shards",
      file.string(), rel, version, current);
}

uint32_t chunk_crc(const uint8_t* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (size > 0) {
    const uInt n = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = crc32(crc, data, n);
    data += n;
    size -= n;
  }
  return static_cast<uint32_t>(crc);
}

void verify_shard_pixels(const std::filesystem::path& path, const ShardMetadata& md) {
  using h5::check;
  h5::Hdf5Lock lock;
  h5::Handle file =
      check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open the file", path);
  h5::Handle ds = check(H5Dopen2(file.get(), "pixels", H5P_DEFAULT), "open dataset pixels", path);
  std::vector<uint8_t> chunk;
  for (int64_t i = 0; i < md.count; ++i) {
    hsize_t offset[5] = {hsize_t(i), 0, 0, 0, 0}, bytes = 0;
    uint32_t mask = 0;
    h5::check_status(H5Dget_chunk_storage_size(ds.get(), offset, &bytes),
                     fmt::format("find the chunk of sample {}", i), path);
    chunk.resize(bytes);
    h5::check_status(H5Dread_chunk(ds.get(), H5P_DEFAULT, offset, &mask, chunk.data()),
                     fmt::format("read the chunk of sample {}", i), path);
    if (chunk_crc(chunk.data(), chunk.size()) != md.pixel_crc[size_t(i)]) {
      throw Error(
          fmt::format("{}: the pixels of sample {} ('{}') do not match their checksum (the file "
                      "was modified or damaged)",
                      path.string(), i, md.samples[size_t(i)].id));
    }
  }
}

}  // namespace m3ret::sharding
