// Internal helpers around the HDF5 C API (serial build, not thread-safe).
//
// Every HDF5 call in m3ret_sharding runs while holding hdf5_mutex(); callers
// lock it with `Hdf5Lock lock;` and keep the critical section small (no
// compression or copying of pixel data inside it where avoidable).
// Not part of the public API.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

namespace m3ret::sharding::h5 {

// The one process-wide lock for HDF5 calls. Constructing the first lock also
// turns off HDF5's automatic error printing (errors become m3ret::Error).
std::mutex& hdf5_mutex();
struct Hdf5Lock {
  Hdf5Lock();
  std::lock_guard<std::mutex> guard;
};

// An owned hid_t, closed with the matching H5*close at destruction.
// Must be destroyed while the HDF5 lock is held.
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  Handle(Handle&& o) noexcept : id_(o.id_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  void reset();
  // Gives up ownership and returns the id.
  hid_t release() {
    hid_t id = id_;
    id_ = -1;
    return id;
  }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
};

// Throws m3ret::Error("<path>: HDF5 error while trying to <what>[: <the system's
// reason, e.g. No space left on device>]") when `id` < 0, else wraps it.
Handle check(hid_t id, const std::string& what, const std::filesystem::path& path);
void check_status(herr_t status, const std::string& what, const std::filesystem::path& path);

// Attributes on an object (file root or dataset). Lock held by the caller.
void write_string_attr(hid_t obj, const std::string& name, const std::string& value,
                       const std::filesystem::path& path);
void write_int_attr(hid_t obj, const std::string& name, const std::vector<int64_t>& values,
                    const std::filesystem::path& path);
std::string read_string_attr(hid_t obj, const std::string& name, const std::filesystem::path& path);
std::vector<int64_t> read_int_attr(hid_t obj, const std::string& name,
                                   const std::filesystem::path& path);
bool has_attr(hid_t obj, const std::string& name);

// 1-D variable-length UTF-8 string datasets. Lock held by the caller.
void write_strings(hid_t file, const std::string& name, const std::vector<std::string>& values,
                   const std::filesystem::path& path);
std::vector<std::string> read_strings(hid_t file, const std::string& name,
                                      const std::filesystem::path& path);

// 1-D uint32 datasets (little-endian on disk). Lock held by the caller.
void write_uint32s(hid_t file, const std::string& name, const std::vector<uint32_t>& values,
                   const std::filesystem::path& path);
std::vector<uint32_t> read_uint32s(hid_t file, const std::string& name,
                                   const std::filesystem::path& path);

// A dataset creation property list that does not record times, so that the
// same content gives byte-identical files.
Handle untimed_dcpl(const std::filesystem::path& path);

}  // namespace m3ret::sharding::h5
