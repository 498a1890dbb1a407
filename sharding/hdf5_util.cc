#include "sharding/hdf5_util.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/error.h"

namespace m3ret::sharding::h5 {

namespace {

// The number of elements (or bytes) a dataset or attribute of `path` declares, refused before
// anything is allocated for it when the file could not hold them (each takes at least a byte
// of the file): a mutated shard declared 2^41 strings (fuzz_shard).
size_t declared_count(hssize_t n, const std::string& what, const std::filesystem::path& path) {
  if (n <= 0) return 0;
  std::error_code ec;
  const uintmax_t bytes = std::filesystem::file_size(path, ec);
  if (!ec && static_cast<uintmax_t>(n) > bytes) {
    throw Error(fmt::format("{}: {} declares {} elements, more than the file's {} bytes can hold",
                            path.string(), what, n, bytes));
  }
  return static_cast<size_t>(n);
}

}  // namespace

std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

Hdf5Lock::Hdf5Lock() : guard(hdf5_mutex()) {
  static bool quiet = [] {
    // No clean-up of HDF5 at exit: after a failed H5Fclose (a full disk) the library's own
    // clean-up dereferences the half-closed file and crashes the exiting process (HDF5 1.10).
    // Every file is closed explicitly; the operating system reclaims what an error left open.
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)quiet;
}

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    o.id_ = -1;
  }
  return *this;
}

void Handle::reset() {
  if (id_ < 0) return;
  switch (H5Iget_type(id_)) {
    case H5I_FILE:
      H5Fclose(id_);
      break;
    case H5I_GROUP:
      H5Gclose(id_);
      break;
    case H5I_DATASET:
      H5Dclose(id_);
      break;
    case H5I_DATASPACE:
      H5Sclose(id_);
      break;
    case H5I_DATATYPE:
      H5Tclose(id_);
      break;
    case H5I_ATTR:
      H5Aclose(id_);
      break;
    case H5I_GENPROP_LST:
      H5Pclose(id_);
      break;
    default:
      break;
  }
  id_ = -1;
}

namespace {

// The operating system's reason for the failure on HDF5's error stack, if one
// is there (its file drivers record "..., errno = 28, error message = 'No
// space left on device', ..."); "" otherwise.
std::string system_cause() {
  std::string cause;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_DOWNWARD,
      [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
        auto& out = *static_cast<std::string*>(data);
        static constexpr char kKey[] = "error message = '";
        const char* m = e->desc ? std::strstr(e->desc, kKey) : nullptr;
        if (out.empty() && m) {
          m += sizeof(kKey) - 1;
          const char* end = std::strchr(m, '\'');
          out.assign(m, end ? size_t(end - m) : std::strlen(m));
        }
        return 0;
      },
      &cause);
  return cause;
}

[[noreturn]] void throw_hdf5_error(const std::string& what, const std::filesystem::path& path) {
  const std::string cause = system_cause();
  throw Error(fmt::format("{}: HDF5 error while trying to {}{}", path.string(), what,
                          cause.empty() ? "" : ": " + cause));
}

}  // namespace

Handle check(hid_t id, const std::string& what, const std::filesystem::path& path) {
  if (id < 0) throw_hdf5_error(what, path);
  return Handle(id);
}

void check_status(herr_t status, const std::string& what, const std::filesystem::path& path) {
  if (status < 0) throw_hdf5_error(what, path);
}

namespace {
Handle vlen_string_type(const std::filesystem::path& path) {
  Handle t = check(H5Tcopy(H5T_C_S1), "create a string type", path);
  check_status(H5Tset_size(t.get(), H5T_VARIABLE), "create a string type", path);
  check_status(H5Tset_cset(t.get(), H5T_CSET_UTF8), "create a string type", path);
  return t;
}
}  // namespace

void write_string_attr(hid_t obj, const std::string& name, const std::string& value,
                       const std::filesystem::path& path) {
  Handle type = vlen_string_type(path);
  Handle space = check(H5Screate(H5S_SCALAR), "create a scalar space", path);
  Handle attr =
      check(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
            "create attribute " + name, path);
  const char* p = value.c_str();
  check_status(H5Awrite(attr.get(), type.get(), &p), "write attribute " + name, path);
}

void write_int_attr(hid_t obj, const std::string& name, const std::vector<int64_t>& values,
                    const std::filesystem::path& path) {
  Handle space;
  if (values.size() == 1) {
    space = check(H5Screate(H5S_SCALAR), "create a scalar space", path);
  } else {
    hsize_t n = values.size();
    space = check(H5Screate_simple(1, &n, nullptr), "create a space", path);
  }
  Handle attr =
      check(H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
            "create attribute " + name, path);
  check_status(H5Awrite(attr.get(), H5T_NATIVE_INT64, values.data()), "write attribute " + name,
               path);
}

bool has_attr(hid_t obj, const std::string& name) { return H5Aexists(obj, name.c_str()) > 0; }

std::string read_string_attr(hid_t obj, const std::string& name,
                             const std::filesystem::path& path) {
  if (!has_attr(obj, name))
    throw Error(fmt::format("{}: missing attribute '{}'", path.string(), name));
  Handle attr = check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "open attribute " + name, path);
  Handle ftype = check(H5Aget_type(attr.get()), "read attribute " + name, path);
  if (H5Tget_class(ftype.get()) != H5T_STRING) {
    throw Error(fmt::format("{}: attribute '{}' is not a string", path.string(), name));
  }
  Handle space = check(H5Aget_space(attr.get()), "read attribute " + name, path);
  if (H5Sget_simple_extent_npoints(space.get()) != 1) {
    throw Error(fmt::format("{}: attribute '{}' is not a single string", path.string(), name));
  }
  if (H5Tis_variable_str(ftype.get()) > 0) {
    Handle mtype = vlen_string_type(path);
    char* p = nullptr;
    check_status(H5Aread(attr.get(), mtype.get(), &p), "read attribute " + name, path);
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  const size_t n =
      declared_count(static_cast<hssize_t>(H5Tget_size(ftype.get())), "attribute " + name, path);
  std::string s(n, '\0');
  Handle mtype = check(H5Tcopy(H5T_C_S1), "create a string type", path);
  H5Tset_size(mtype.get(), n);
  check_status(H5Aread(attr.get(), mtype.get(), s.data()), "read attribute " + name, path);
  s.resize(std::strlen(s.c_str()));
  return s;
}

std::vector<int64_t> read_int_attr(hid_t obj, const std::string& name,
                                   const std::filesystem::path& path) {
  if (!has_attr(obj, name))
    throw Error(fmt::format("{}: missing attribute '{}'", path.string(), name));
  Handle attr = check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "open attribute " + name, path);
  Handle ftype = check(H5Aget_type(attr.get()), "read attribute " + name, path);
  if (H5Tget_class(ftype.get()) != H5T_INTEGER) {
    throw Error(fmt::format("{}: attribute '{}' is not an integer", path.string(), name));
  }
  Handle space = check(H5Aget_space(attr.get()), "read attribute " + name, path);
  std::vector<int64_t> v(
      declared_count(H5Sget_simple_extent_npoints(space.get()), "attribute " + name, path));
  check_status(H5Aread(attr.get(), H5T_NATIVE_INT64, v.data()), "read attribute " + name, path);
  return v;
}

Handle untimed_dcpl(const std::filesystem::path& path) {
  Handle dcpl = check(H5Pcreate(H5P_DATASET_CREATE), "create a property list", path);
  check_status(H5Pset_obj_track_times(dcpl.get(), false), "set dataset properties", path);
  return dcpl;
}

void write_strings(hid_t file, const std::string& name, const std::vector<std::string>& values,
                   const std::filesystem::path& path) {
  Handle type = vlen_string_type(path);
  hsize_t n = values.size();
  Handle space = check(H5Screate_simple(1, &n, nullptr), "create a space", path);
  Handle dcpl = untimed_dcpl(path);
  Handle ds = check(
      H5Dcreate2(file, name.c_str(), type.get(), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
      "create dataset " + name, path);
  if (n == 0) return;
  std::vector<const char*> ptrs;
  ptrs.reserve(values.size());
  for (const auto& s : values) ptrs.push_back(s.c_str());
  check_status(H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()),
               "write dataset " + name, path);
}

std::vector<std::string> read_strings(hid_t file, const std::string& name,
                                      const std::filesystem::path& path) {
  if (H5Lexists(file, name.c_str(), H5P_DEFAULT) <= 0) {
    throw Error(fmt::format("{}: missing dataset '{}'", path.string(), name));
  }
  Handle ds = check(H5Dopen2(file, name.c_str(), H5P_DEFAULT), "open dataset " + name, path);
  Handle ftype = check(H5Dget_type(ds.get()), "read dataset " + name, path);
  if (H5Tget_class(ftype.get()) != H5T_STRING || H5Tis_variable_str(ftype.get()) <= 0) {
    throw Error(
        fmt::format("{}: dataset '{}' is not a variable-length string array", path.string(), name));
  }
  Handle space = check(H5Dget_space(ds.get()), "read dataset " + name, path);
  if (H5Sget_simple_extent_ndims(space.get()) != 1) {
    throw Error(fmt::format("{}: dataset '{}' is not 1-D", path.string(), name));
  }
  const size_t n =
      declared_count(H5Sget_simple_extent_npoints(space.get()), "dataset " + name, path);
  std::vector<std::string> out;
  if (n == 0) return out;
  Handle mtype = vlen_string_type(path);
  std::vector<char*> ptrs(n, nullptr);
  check_status(H5Dread(ds.get(), mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()),
               "read dataset " + name, path);
  out.reserve(ptrs.size());
  for (char* p : ptrs) out.emplace_back(p ? p : "");
  H5Dvlen_reclaim(mtype.get(), space.get(), H5P_DEFAULT, ptrs.data());
  return out;
}

void write_uint32s(hid_t file, const std::string& name, const std::vector<uint32_t>& values,
                   const std::filesystem::path& path) {
  hsize_t n = values.size();
  Handle space = check(H5Screate_simple(1, &n, nullptr), "create a space", path);
  Handle dcpl = untimed_dcpl(path);
  Handle ds = check(H5Dcreate2(file, name.c_str(), H5T_STD_U32LE, space.get(), H5P_DEFAULT,
                               dcpl.get(), H5P_DEFAULT),
                    "create dataset " + name, path);
  if (n == 0) return;
  check_status(H5Dwrite(ds.get(), H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()),
               "write dataset " + name, path);
}

std::vector<uint32_t> read_uint32s(hid_t file, const std::string& name,
                                   const std::filesystem::path& path) {
  if (H5Lexists(file, name.c_str(), H5P_DEFAULT) <= 0) {
    throw Error(fmt::format("{}: missing dataset '{}'", path.string(), name));
  }
  Handle ds = check(H5Dopen2(file, name.c_str(), H5P_DEFAULT), "open dataset " + name, path);
  Handle ftype = check(H5Dget_type(ds.get()), "read dataset " + name, path);
  Handle space = check(H5Dget_space(ds.get()), "read dataset " + name, path);
  if (H5Tget_class(ftype.get()) != H5T_INTEGER || H5Sget_simple_extent_ndims(space.get()) != 1) {
    throw Error(fmt::format("{}: dataset '{}' is not a 1-D integer array", path.string(), name));
  }
  std::vector<uint32_t> out(
      declared_count(H5Sget_simple_extent_npoints(space.get()), "dataset " + name, path));
  if (out.empty()) return out;
  check_status(H5Dread(ds.get(), H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()),
               "read dataset " + name, path);
  return out;
}

}  // namespace m3ret::sharding::h5
