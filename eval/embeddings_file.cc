#include "eval/embeddings_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <unordered_set>
#include <system_error>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/fs.h"
#include "data/isolate.h"
#include "sharding/hdf5_util.h"

namespace m3ret::eval {
namespace {

namespace stdfs = std::filesystem;
namespace h5 = sharding::h5;

// Messages of this file name it: "embeddings file <path>: <what>". Errors from
// the shared HDF5 helpers name the path themselves.
[[noreturn]] void fail(const stdfs::path& path, const std::string& what) {
  throw Error(fmt::format("embeddings file {}: {}", path.string(), what));
}

// ------------------------------------------------------------------ writing
// Caller holds the HDF5 lock.
void write_file(const stdfs::path& tmp, const stdfs::path& path, const EmbeddingSet& set) {
  h5::Handle file = h5::check(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
                              "create " + tmp.string(), path);
  hsize_t dims[2] = {static_cast<hsize_t>(set.N), static_cast<hsize_t>(set.D)};
  h5::Handle space = h5::check(H5Screate_simple(2, dims, nullptr), "create a space", path);
  h5::Handle dcpl = h5::untimed_dcpl(path);
  h5::Handle ds = h5::check(H5Dcreate2(file.get(), "embeddings", H5T_IEEE_F32LE, space.get(),
                                       H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                            "create dataset embeddings", path);
  if (set.N > 0) {
    h5::check_status(
        H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, set.X.data()),
        "write dataset embeddings", path);
  }
  std::vector<std::string> labels;
  labels.reserve(set.labels.size());
  for (const auto& l : set.labels) labels.push_back(join_labels(l));
  std::vector<std::string> sources = set.sources;
  sources.resize(static_cast<size_t>(set.N));  // "" where unknown
  h5::write_strings(file.get(), "ids", set.ids, path);
  h5::write_strings(file.get(), "labels", labels, path);
  h5::write_strings(file.get(), "groups", set.groups, path);
  h5::write_strings(file.get(), "modality", set.modality, path);
  h5::write_strings(file.get(), "splits", set.splits, path);
  h5::write_strings(file.get(), "sources", sources, path);
  h5::write_string_attr(file.get(), "format", kEmbeddingsFormat, path);
  h5::write_int_attr(file.get(), "format_version", {kEmbeddingsFormatVersion}, path);
  h5::write_int_attr(file.get(), "dim", {set.D}, path);
  h5::write_int_attr(file.get(), "count", {set.N}, path);
  h5::write_string_attr(file.get(), "checkpoint", set.attrs.checkpoint, path);
  h5::write_int_attr(file.get(), "step", {set.attrs.step}, path);
  h5::write_int_attr(file.get(), "random_init", {set.attrs.random_init ? 1 : 0}, path);
  h5::write_string_attr(file.get(), "encoder", set.attrs.encoder, path);
  h5::write_string_attr(file.get(), "weights", set.attrs.weights, path);
  h5::write_string_attr(file.get(), "pooling", set.attrs.pooling, path);
  h5::write_string_attr(file.get(), "preprocess", set.attrs.preprocess, path);
  h5::write_string_attr(file.get(), "train_modalities", join_labels(set.attrs.train_modalities),
                        path);
  h5::check_status(H5Fflush(file.get(), H5F_SCOPE_LOCAL), "flush", path);
}

// ------------------------------------------------------------------ reading
int64_t read_int(hid_t obj, const char* name, const stdfs::path& path) {
  auto v = h5::read_int_attr(obj, name, path);
  if (v.size() != 1) fail(path, fmt::format("attribute '{}' must hold one integer", name));
  return v[0];
}

// The length of a rank-1 dataset, checked against `n` before its strings are read.
void check_column_shape(hid_t file, const char* name, int64_t n, const stdfs::path& path) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0)
    fail(path, fmt::format("missing dataset '{}'", name));
  h5::Handle ds =
      h5::check(H5Dopen2(file, name, H5P_DEFAULT), fmt::format("open dataset {}", name), path);
  h5::Handle space = h5::check(H5Dget_space(ds.get()), fmt::format("read dataset {}", name), path);
  hsize_t dims[2] = {0, 0};
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank == 1) H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  if (rank != 1 || dims[0] != static_cast<hsize_t>(n))
    fail(path, fmt::format("dataset '{}' must have shape [{}] (one entry per embedding), has {} "
                           "dimension(s){}",
                           name, n, rank, rank == 1 ? fmt::format(" [{}]", dims[0]) : ""));
}

std::vector<std::string> read_column(hid_t file, const char* name, int64_t n,
                                     const stdfs::path& path) {
  check_column_shape(file, name, n, path);
  auto values = h5::read_strings(file, name, path);
  if (static_cast<int64_t>(values.size()) != n)
    fail(path, fmt::format("dataset '{}' must have shape [{}] (one entry per embedding), has {}",
                           name, n, values.size()));
  return values;
}

// Most a chunked (possibly compressed) dataset may expand to, per byte of file.
constexpr uint64_t kMaxExpansion = 1024;

// Refuses a dataset of N x D floats that the file cannot hold, before any
// allocation: N * D * 4 bytes must not overflow, must fit in the file when the
// data are stored contiguously (as m3ret writes them), and must stay under
// kMaxExpansion times the file size otherwise.
void check_matrix_size(hid_t ds, hsize_t n, hsize_t d, const stdfs::path& path) {
  std::error_code ec;
  const uint64_t file_size = stdfs::file_size(path, ec);
  if (ec) fail(path, fmt::format("cannot read its size: {}", ec.message()));
  const uint64_t limit = std::numeric_limits<uint64_t>::max() / sizeof(float);
  const bool overflow = d != 0 && n > limit / d;
  const uint64_t bytes = overflow ? 0 : n * d * sizeof(float);
  h5::Handle dcpl = h5::check(H5Dget_create_plist(ds), "read dataset embeddings", path);
  const bool contiguous = H5Pget_layout(dcpl.get()) == H5D_CONTIGUOUS;
  const uint64_t room = contiguous ? file_size : file_size * kMaxExpansion;
  if (overflow || bytes > room)
    fail(path, fmt::format("dataset 'embeddings' claims {} x {} floats ({} bytes) but the file has "
                           "{} bytes; refusing a shape the file cannot hold",
                           n, d, overflow ? std::string("more than 2^64") : std::to_string(bytes),
                           file_size));
}

// Caller holds the HDF5 lock.
EmbeddingSet read_file(const stdfs::path& path) {
  h5::Handle file =
      h5::check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open the file", path);
  std::string format = h5::read_string_attr(file.get(), "format", path);
  if (format != kEmbeddingsFormat)
    fail(path, fmt::format("format is '{}', expected '{}'", format, kEmbeddingsFormat));
  int64_t version = read_int(file.get(), "format_version", path);
  if (version != kEmbeddingsFormatVersion)
    fail(path, fmt::format("format_version is {}, this build reads version {}", version,
                           kEmbeddingsFormatVersion));

  EmbeddingSet set;
  if (H5Lexists(file.get(), "embeddings", H5P_DEFAULT) <= 0)
    fail(path, "missing dataset 'embeddings'");
  h5::Handle ds =
      h5::check(H5Dopen2(file.get(), "embeddings", H5P_DEFAULT), "open dataset embeddings", path);
  h5::Handle space = h5::check(H5Dget_space(ds.get()), "read dataset embeddings", path);
  if (H5Sget_simple_extent_ndims(space.get()) != 2)
    fail(path, fmt::format("dataset 'embeddings' has rank {}, expected 2",
                           H5Sget_simple_extent_ndims(space.get())));
  hsize_t dims[2] = {0, 0};
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  h5::Handle ftype = h5::check(H5Dget_type(ds.get()), "read dataset embeddings", path);
  if (H5Tget_class(ftype.get()) != H5T_FLOAT)
    fail(path, "dataset 'embeddings' is not floating point");
  check_matrix_size(ds.get(), dims[0], dims[1], path);
  set.N = static_cast<int64_t>(dims[0]);
  set.D = static_cast<int64_t>(dims[1]);
  int64_t dim_attr = read_int(file.get(), "dim", path);
  if (dim_attr != set.D)
    fail(path, fmt::format("attribute dim = {} but dataset 'embeddings' has {} columns", dim_attr,
                           set.D));
  set.X.resize(static_cast<size_t>(set.N * set.D));
  if (!set.X.empty()) {
    h5::check_status(
        H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, set.X.data()),
        "read dataset embeddings", path);
  }
  set.ids = read_column(file.get(), "ids", set.N, path);
  auto labels = read_column(file.get(), "labels", set.N, path);
  set.groups = read_column(file.get(), "groups", set.N, path);
  set.modality = read_column(file.get(), "modality", set.N, path);
  set.splits = read_column(file.get(), "splits", set.N, path);
  // Optional (files written before sources were recorded): empty paths.
  if (H5Lexists(file.get(), "sources", H5P_DEFAULT) > 0)
    set.sources = read_column(file.get(), "sources", set.N, path);
  else
    set.sources.assign(static_cast<size_t>(set.N), "");
  set.labels.reserve(labels.size());
  for (const auto& l : labels) set.labels.push_back(split_labels(l));
  set.attrs.checkpoint = h5::read_string_attr(file.get(), "checkpoint", path);
  set.attrs.step = read_int(file.get(), "step", path);
  set.attrs.random_init = read_int(file.get(), "random_init", path) != 0;
  if (h5::has_attr(file.get(), "encoder"))
    set.attrs.encoder = h5::read_string_attr(file.get(), "encoder", path);
  if (h5::has_attr(file.get(), "weights"))
    set.attrs.weights = h5::read_string_attr(file.get(), "weights", path);
  if (h5::has_attr(file.get(), "pooling"))
    set.attrs.pooling = h5::read_string_attr(file.get(), "pooling", path);
  if (h5::has_attr(file.get(), "preprocess"))
    set.attrs.preprocess = h5::read_string_attr(file.get(), "preprocess", path);
  if (h5::has_attr(file.get(), "train_modalities"))
    set.attrs.train_modalities =
        split_labels(h5::read_string_attr(file.get(), "train_modalities", path));
  return set;
}

}  // namespace

void EmbeddingSet::check(const std::string& what) const {
  auto bad = [&](const std::string& msg) { throw Error(what + ": " + msg); };
  if (N < 0 || D < 1) bad(fmt::format("invalid shape N={} D={} (D must be >= 1)", N, D));
  if (static_cast<int64_t>(X.size()) != N * D)
    bad(fmt::format("X has {} values, expected N*D = {}", X.size(), N * D));
  auto same = [&](size_t n, const char* name) {
    if (static_cast<int64_t>(n) != N)
      bad(fmt::format("'{}' has {} entries, expected N = {}", name, n, N));
  };
  same(ids.size(), "ids");
  same(modality.size(), "modality");
  same(groups.size(), "groups");
  same(splits.size(), "splits");
  same(labels.size(), "labels");
  if (!sources.empty()) same(sources.size(), "sources");
  for (size_t i = 0; i < X.size(); ++i)
    if (!std::isfinite(X[i]))
      bad(fmt::format("embedding of sample {} ('{}') is not finite", i / D, ids[i / D]));
  for (int64_t i = 0; i < N; ++i)
    for (const auto& l : labels[i])
      if (l.empty() || l.find('|') != std::string::npos)
        bad(fmt::format("label '{}' of sample '{}' is empty or contains '|'", l, ids[i]));
  for (const auto& m : attrs.train_modalities)
    if (m.empty() || m.find('|') != std::string::npos)
      bad(fmt::format("train modality '{}' is empty or contains '|'", m));
}

void EmbeddingSet::check_samples(const std::string& what) const {
  std::unordered_map<std::string, int64_t> first;
  first.reserve(ids.size());
  for (int64_t i = 0; i < N; ++i) {
    if (!data::is_modality(modality[i]))
      throw Error(fmt::format("{}: sample {} ('{}') has unknown modality '{}' (one of {})", what, i,
                              ids[i], modality[i], fmt::join(data::modality_names(), ", ")));
    auto [it, fresh] = first.emplace(ids[i], i);
    if (!fresh)
      throw Error(fmt::format("{}: id '{}' appears twice (samples {} and {}); ids must be unique",
                              what, ids[i], it->second, i));
  }
}

void write_embeddings(const std::filesystem::path& path, const EmbeddingSet& set) {
  set.check(fmt::format("embeddings file {}", path.string()));
  set.check_samples(fmt::format("embeddings file {}", path.string()));
  if (path.has_parent_path()) {
    std::error_code ec;
    stdfs::create_directories(path.parent_path(), ec);
    if (ec) fail(path, fmt::format("cannot create its folder: {}", ec.message()));
  }
  auto tmp = fs::temp_sibling(path);
  try {
    {
      h5::Hdf5Lock lock;
      write_file(tmp, path, set);  // closes the file before returning
    }
    fs::commit(tmp, path);
  } catch (...) {
    std::error_code ec;
    stdfs::remove(tmp, ec);
    throw;
  }
}

namespace {

// What identifies the bytes of a file: it was not replaced or rewritten in between.
std::string file_identity(const stdfs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(path, std::strerror(errno));
  return fmt::format("{}:{}:{}:{}.{}", st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec,
                     st.st_mtim.tv_nsec);
}

// Reads the whole file in a forked child first (read_embeddings). Caller holds the HDF5 lock,
// so no other thread is inside libhdf5 at the fork.
constexpr int64_t kReadBytesPerSecond = int64_t{16} << 20, kReadMemoryBaseMb = 4096;

void read_in_child(const stdfs::path& path, uint64_t size, const ReadLimits& read_limits) {
  data::isolate::Limits limits;
  limits.timeout_s = read_limits.base_timeout_s + static_cast<int64_t>(size) / kReadBytesPerSecond;
  limits.memory_mb = kReadMemoryBaseMb + static_cast<int64_t>(4 * (size >> 20));
  limits.task = "reading it with libhdf5";
  limits.timeout_setting = limits.memory_setting = "";
  try {
    data::isolate::check(
        path.string(), [](const std::string& file) { (void)read_file(file); }, path.string(),
        limits);
  } catch (const InputError& e) {  // killed, crashed, out of memory
    fail(path, e.reason());
  }
}

}  // namespace

EmbeddingSet read_embeddings(const std::filesystem::path& path, const ReadLimits& limits) {
  std::error_code ec;
  if (!stdfs::is_regular_file(path, ec)) fail(path, "no such file");
  EmbeddingSet set;
  {
    h5::Hdf5Lock lock;
    if (H5Fis_hdf5(path.c_str()) <= 0) fail(path, "not an HDF5 file");
    const std::string identity = file_identity(path);
    read_in_child(path, stdfs::file_size(path, ec), limits);
    set = read_file(path);
    if (file_identity(path) != identity)
      fail(path, "the file changed while it was read; read it again");
  }
  set.check(fmt::format("embeddings file {}", path.string()));
  set.check_samples(fmt::format("embeddings file {}", path.string()));
  return set;
}

}  // namespace m3ret::eval

namespace m3ret::eval {
namespace {

// The ids of `a` that `b` lacks, in a's order.
std::vector<std::string> ids_missing(const EmbeddingSet& a, const EmbeddingSet& b) {
  const std::unordered_set<std::string> in_b(b.ids.begin(), b.ids.end());
  std::vector<std::string> missing;
  for (const auto& id : a.ids)
    if (!in_b.count(id)) missing.push_back(id);
  return missing;
}

// "3 (first: a, b, c)".
std::string count_and_first(const std::vector<std::string>& ids) {
  constexpr size_t kShown = 5;
  const std::vector<std::string> first(ids.begin(), ids.begin() + std::min(ids.size(), kShown));
  return fmt::format("{} (first: {}{})", ids.size(), fmt::join(first, ", "),
                     ids.size() > kShown ? ", ..." : "");
}

}  // namespace

void check_same_samples(const EmbeddingSet& base, const std::string& base_name,
                        const EmbeddingSet& other, const std::string& other_name) {
  const auto missing = ids_missing(base, other), extra = ids_missing(other, base);
  if (missing.empty() && extra.empty()) return;
  std::vector<std::string> parts;
  if (!missing.empty())
    parts.push_back(fmt::format("lacks {} of the {} samples of {}", count_and_first(missing),
                                base.N, base_name));
  if (!extra.empty())
    parts.push_back(fmt::format("has {} samples that {} lacks", count_and_first(extra), base_name));
  throw Error(
      fmt::format("{} does not cover the same samples: it {}; embed both from the same "
                  "shards and split",
                  other_name, fmt::join(parts, " and ")));
}

}  // namespace m3ret::eval
