#include "eval/embeddings_file.h"

#include <hdf5.h>

#include <cmath>
#include <system_error>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"

namespace m3ret::eval {
namespace {

namespace stdfs = std::filesystem;

// An owned hid_t closed by `close` at destruction.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle& operator=(Handle&&) = delete;
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  hid_t get() const { return id_; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// All messages name the file: "<path>: <what>".
[[noreturn]] void fail(const stdfs::path& path, const std::string& what) {
  throw Error(fmt::format("embeddings file {}: {}", path.string(), what));
}

hid_t ok(hid_t id, const stdfs::path& path, const std::string& what) {
  if (id < 0) fail(path, what + " failed (HDF5 error)");
  return id;
}
void ok_status(herr_t s, const stdfs::path& path, const std::string& what) {
  if (s < 0) fail(path, what + " failed (HDF5 error)");
}

void quiet_hdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

Handle vlen_string_type(const stdfs::path& path) {
  Handle t(ok(H5Tcopy(H5T_C_S1), path, "H5Tcopy"), H5Tclose);
  ok_status(H5Tset_size(t.get(), H5T_VARIABLE), path, "H5Tset_size");
  ok_status(H5Tset_cset(t.get(), H5T_CSET_UTF8), path, "H5Tset_cset");
  return t;
}

// ------------------------------------------------------------------ writing
void write_strings(hid_t file, const char* name, const std::vector<std::string>& values,
                   const stdfs::path& path) {
  hsize_t n = values.size();
  Handle space(ok(H5Screate_simple(1, &n, nullptr), path, "H5Screate"), H5Sclose);
  Handle type = vlen_string_type(path);
  Handle ds(ok(H5Dcreate2(file, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT,
                          H5P_DEFAULT),
               path, fmt::format("creating dataset '{}'", name)),
            H5Dclose);
  if (n == 0) return;
  std::vector<const char*> ptrs;
  ptrs.reserve(n);
  for (const auto& v : values) ptrs.push_back(v.c_str());
  ok_status(H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()), path,
            fmt::format("writing dataset '{}'", name));
}

void write_string_attr(hid_t obj, const char* name, const std::string& value,
                       const stdfs::path& path) {
  Handle space(ok(H5Screate(H5S_SCALAR), path, "H5Screate"), H5Sclose);
  Handle type = vlen_string_type(path);
  Handle attr(ok(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), path,
                 fmt::format("creating attribute '{}'", name)),
              H5Aclose);
  const char* p = value.c_str();
  ok_status(H5Awrite(attr.get(), type.get(), &p), path,
            fmt::format("writing attribute '{}'", name));
}

void write_int_attr(hid_t obj, const char* name, int64_t value, const stdfs::path& path) {
  Handle space(ok(H5Screate(H5S_SCALAR), path, "H5Screate"), H5Sclose);
  Handle attr(ok(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                 path, fmt::format("creating attribute '{}'", name)),
              H5Aclose);
  ok_status(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), path,
            fmt::format("writing attribute '{}'", name));
}

void write_file(const stdfs::path& tmp, const stdfs::path& path, const EmbeddingSet& set) {
  Handle file(ok(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), path,
                 fmt::format("creating {}", tmp.string())),
              H5Fclose);
  hsize_t dims[2] = {static_cast<hsize_t>(set.N), static_cast<hsize_t>(set.D)};
  Handle space(ok(H5Screate_simple(2, dims, nullptr), path, "H5Screate"), H5Sclose);
  Handle ds(ok(H5Dcreate2(file.get(), "embeddings", H5T_IEEE_F32LE, space.get(), H5P_DEFAULT,
                          H5P_DEFAULT, H5P_DEFAULT),
               path, "creating dataset 'embeddings'"),
            H5Dclose);
  if (set.N > 0) {
    ok_status(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, set.X.data()),
              path, "writing dataset 'embeddings'");
  }
  std::vector<std::string> labels;
  labels.reserve(set.labels.size());
  for (const auto& l : set.labels) labels.push_back(join_labels(l));
  write_strings(file.get(), "ids", set.ids, path);
  write_strings(file.get(), "labels", labels, path);
  write_strings(file.get(), "groups", set.groups, path);
  write_strings(file.get(), "modality", set.modality, path);
  write_strings(file.get(), "splits", set.splits, path);
  write_string_attr(file.get(), "format", kEmbeddingsFormat, path);
  write_int_attr(file.get(), "format_version", kEmbeddingsFormatVersion, path);
  write_int_attr(file.get(), "dim", set.D, path);
  write_int_attr(file.get(), "count", set.N, path);
  write_string_attr(file.get(), "checkpoint", set.attrs.checkpoint, path);
  write_int_attr(file.get(), "step", set.attrs.step, path);
  write_int_attr(file.get(), "random_init", set.attrs.random_init ? 1 : 0, path);
  ok_status(H5Fflush(file.get(), H5F_SCOPE_LOCAL), path, "H5Fflush");
}

// ------------------------------------------------------------------ reading
bool has_attr(hid_t obj, const char* name) { return H5Aexists(obj, name) > 0; }

std::string read_string_attr(hid_t obj, const char* name, const stdfs::path& path) {
  if (!has_attr(obj, name)) fail(path, fmt::format("missing attribute '{}'", name));
  Handle attr(ok(H5Aopen(obj, name, H5P_DEFAULT), path, fmt::format("opening attribute '{}'", name)),
              H5Aclose);
  Handle ftype(ok(H5Aget_type(attr.get()), path, "H5Aget_type"), H5Tclose);
  if (H5Tget_class(ftype.get()) != H5T_STRING)
    fail(path, fmt::format("attribute '{}' is not a string", name));
  if (H5Tis_variable_str(ftype.get()) > 0) {
    Handle type = vlen_string_type(path);
    char* p = nullptr;
    ok_status(H5Aread(attr.get(), type.get(), &p), path,
              fmt::format("reading attribute '{}'", name));
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  size_t size = H5Tget_size(ftype.get());
  std::string buf(size, '\0');
  ok_status(H5Aread(attr.get(), ftype.get(), buf.data()), path,
            fmt::format("reading attribute '{}'", name));
  return buf.substr(0, buf.find('\0'));
}

int64_t read_int_attr(hid_t obj, const char* name, const stdfs::path& path) {
  if (!has_attr(obj, name)) fail(path, fmt::format("missing attribute '{}'", name));
  Handle attr(ok(H5Aopen(obj, name, H5P_DEFAULT), path, fmt::format("opening attribute '{}'", name)),
              H5Aclose);
  Handle ftype(ok(H5Aget_type(attr.get()), path, "H5Aget_type"), H5Tclose);
  if (H5Tget_class(ftype.get()) != H5T_INTEGER)
    fail(path, fmt::format("attribute '{}' is not an integer", name));
  int64_t v = 0;
  ok_status(H5Aread(attr.get(), H5T_NATIVE_INT64, &v), path,
            fmt::format("reading attribute '{}'", name));
  return v;
}

Handle open_dataset(hid_t file, const char* name, const stdfs::path& path) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0) fail(path, fmt::format("missing dataset '{}'", name));
  return Handle(ok(H5Dopen2(file, name, H5P_DEFAULT), path, fmt::format("opening dataset '{}'", name)),
                H5Dclose);
}

std::vector<hsize_t> dataset_dims(hid_t ds, const stdfs::path& path) {
  Handle space(ok(H5Dget_space(ds), path, "H5Dget_space"), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) fail(path, "H5Sget_simple_extent_ndims failed");
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return dims;
}

std::vector<std::string> read_strings(hid_t file, const char* name, int64_t n,
                                      const stdfs::path& path) {
  Handle ds = open_dataset(file, name, path);
  auto dims = dataset_dims(ds.get(), path);
  if (dims.size() != 1 || static_cast<int64_t>(dims[0]) != n)
    fail(path, fmt::format("dataset '{}' must have shape [{}] (one entry per embedding)", name, n));
  Handle ftype(ok(H5Dget_type(ds.get()), path, "H5Dget_type"), H5Tclose);
  if (H5Tget_class(ftype.get()) != H5T_STRING)
    fail(path, fmt::format("dataset '{}' is not a string dataset", name));
  std::vector<std::string> out(n);
  if (n == 0) return out;
  if (H5Tis_variable_str(ftype.get()) > 0) {
    Handle type = vlen_string_type(path);
    std::vector<char*> ptrs(n, nullptr);
    ok_status(H5Dread(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()), path,
              fmt::format("reading dataset '{}'", name));
    for (int64_t i = 0; i < n; ++i) out[i] = ptrs[i] ? ptrs[i] : "";
    Handle space(ok(H5Dget_space(ds.get()), path, "H5Dget_space"), H5Sclose);
    H5Dvlen_reclaim(type.get(), space.get(), H5P_DEFAULT, ptrs.data());
  } else {  // fixed-length strings (e.g. written by numpy 'S' arrays)
    size_t size = H5Tget_size(ftype.get());
    std::string buf(size * n, '\0');
    ok_status(H5Dread(ds.get(), ftype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), path,
              fmt::format("reading dataset '{}'", name));
    for (int64_t i = 0; i < n; ++i) {
      std::string s = buf.substr(i * size, size);
      out[i] = s.substr(0, s.find('\0'));
    }
  }
  return out;
}

EmbeddingSet read_file(const stdfs::path& path) {
  Handle file(ok(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), path, "opening"), H5Fclose);
  std::string format = read_string_attr(file.get(), "format", path);
  if (format != kEmbeddingsFormat)
    fail(path, fmt::format("format is '{}', expected '{}'", format, kEmbeddingsFormat));
  int64_t version = read_int_attr(file.get(), "format_version", path);
  if (version != kEmbeddingsFormatVersion)
    fail(path, fmt::format("format_version is {}, this build reads version {}", version,
                           kEmbeddingsFormatVersion));

  EmbeddingSet set;
  Handle ds = open_dataset(file.get(), "embeddings", path);
  auto dims = dataset_dims(ds.get(), path);
  if (dims.size() != 2) fail(path, fmt::format("dataset 'embeddings' has rank {}, expected 2", dims.size()));
  Handle ftype(ok(H5Dget_type(ds.get()), path, "H5Dget_type"), H5Tclose);
  if (H5Tget_class(ftype.get()) != H5T_FLOAT)
    fail(path, "dataset 'embeddings' is not floating point");
  set.N = static_cast<int64_t>(dims[0]);
  set.D = static_cast<int64_t>(dims[1]);
  int64_t dim_attr = read_int_attr(file.get(), "dim", path);
  if (dim_attr != set.D)
    fail(path, fmt::format("attribute dim = {} but dataset 'embeddings' has {} columns", dim_attr, set.D));
  set.X.resize(static_cast<size_t>(set.N * set.D));
  if (!set.X.empty()) {
    ok_status(H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, set.X.data()),
              path, "reading dataset 'embeddings'");
  }
  set.ids = read_strings(file.get(), "ids", set.N, path);
  auto labels = read_strings(file.get(), "labels", set.N, path);
  set.groups = read_strings(file.get(), "groups", set.N, path);
  set.modality = read_strings(file.get(), "modality", set.N, path);
  set.splits = read_strings(file.get(), "splits", set.N, path);
  set.labels.reserve(labels.size());
  for (const auto& l : labels) set.labels.push_back(split_labels(l));
  set.attrs.checkpoint = read_string_attr(file.get(), "checkpoint", path);
  set.attrs.step = read_int_attr(file.get(), "step", path);
  set.attrs.random_init = read_int_attr(file.get(), "random_init", path) != 0;
  return set;
}

}  // namespace

void EmbeddingSet::check(const std::string& what) const {
  auto bad = [&](const std::string& msg) { throw Error(what + ": " + msg); };
  if (N < 0 || D < 1) bad(fmt::format("invalid shape N={} D={} (D must be >= 1)", N, D));
  if (static_cast<int64_t>(X.size()) != N * D)
    bad(fmt::format("X has {} values, expected N*D = {}", X.size(), N * D));
  auto same = [&](size_t n, const char* name) {
    if (static_cast<int64_t>(n) != N) bad(fmt::format("'{}' has {} entries, expected N = {}", name, n, N));
  };
  same(ids.size(), "ids");
  same(modality.size(), "modality");
  same(groups.size(), "groups");
  same(splits.size(), "splits");
  same(labels.size(), "labels");
  for (size_t i = 0; i < X.size(); ++i)
    if (!std::isfinite(X[i]))
      bad(fmt::format("embedding of sample {} ('{}') is not finite", i / D, ids[i / D]));
  for (int64_t i = 0; i < N; ++i)
    for (const auto& l : labels[i])
      if (l.empty() || l.find('|') != std::string::npos)
        bad(fmt::format("label '{}' of sample '{}' is empty or contains '|'", l, ids[i]));
}

void write_embeddings(const std::filesystem::path& path, const EmbeddingSet& set) {
  set.check(fmt::format("embeddings file {}", path.string()));
  quiet_hdf5();
  if (path.has_parent_path()) {
    std::error_code ec;
    stdfs::create_directories(path.parent_path(), ec);
    if (ec) fail(path, fmt::format("cannot create its folder: {}", ec.message()));
  }
  auto tmp = fs::temp_sibling(path);
  try {
    write_file(tmp, path, set);  // closes the file before returning
    fs::commit(tmp, path);
  } catch (...) {
    std::error_code ec;
    stdfs::remove(tmp, ec);
    throw;
  }
}

EmbeddingSet read_embeddings(const std::filesystem::path& path) {
  quiet_hdf5();
  std::error_code ec;
  if (!stdfs::is_regular_file(path, ec)) fail(path, "no such file");
  if (H5Fis_hdf5(path.c_str()) <= 0) fail(path, "not an HDF5 file");
  EmbeddingSet set = read_file(path);
  set.check(fmt::format("embeddings file {}", path.string()));
  return set;
}

}  // namespace m3ret::eval
