// NumPy .npz archives (a zip of .npy arrays, stored or deflated), read through
// libzip (internal to data/; used by the medmnist importer). Only the .npy
// header is parsed here: magic, version 1-3, 'descr', 'fortran_order', 'shape'.
// Not thread-safe per object (one libzip handle).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

struct zip;

namespace m3ret::data::npz {

struct ArrayInfo {
  std::string descr;           // NumPy type string, e.g. "|u1", "<i8", "<f4"
  std::vector<int64_t> shape;  // C order
  int64_t item_bytes = 0;      // bytes per element
  int64_t count() const;       // product of shape (1 for a scalar)
  int64_t row_count() const;   // product of shape[1:]: elements per row along axis 0
};

class Archive {
 public:
  // Opens `path`. Throws m3ret::InputError(path, reason) when it is not a zip.
  explicit Archive(const std::filesystem::path& path);
  ~Archive();
  Archive(const Archive&) = delete;
  Archive& operator=(const Archive&) = delete;

  // Array names (entry names without ".npy"), in archive order.
  std::vector<std::string> names() const;
  bool has(const std::string& name) const;

  // Header of array `name`. Throws InputError naming "<path>:<name>.npy" for a
  // missing entry, a bad header, Fortran order, a negative or overflowing
  // shape, or a payload of another size than the header promises (checked
  // before anything is allocated).
  ArrayInfo info(const std::string& name) const;

  // Streams array `name` as rows along axis 0: on_row(i, data, bytes) with
  // bytes = item_bytes * product(shape[1:]). Only one row is in memory.
  // An array of 0 rows (shape (0, ...)) calls on_row never.
  void for_each_row(const std::string& name,
                    const std::function<void(int64_t, const uint8_t*, size_t)>& on_row) const;

  // The whole integer or bool array as int64 (types b1 i1 u1 i2 u2 i4 u4 i8 u8, either byte order).
  std::vector<int64_t> read_int64(const std::string& name) const;

 private:
  std::filesystem::path path_;
  ::zip* zip_ = nullptr;
};

}  // namespace m3ret::data::npz
