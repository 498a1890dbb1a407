#include "data/npz.h"

#include <cstring>
#include <limits>
#include <memory>

#include <fmt/format.h>
#include <zip.h>

#include "core/error.h"

namespace m3ret::data::npz {

namespace {

struct FileCloser {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};
using File = std::unique_ptr<zip_file_t, FileCloser>;

// Reads exactly n bytes; false at a short read.
bool read_exact(zip_file_t* f, void* buf, size_t n) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    const zip_int64_t got = zip_fread(f, p, n);
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

// The value text after "'key':" in a .npy header dict.
std::string dict_value(const std::string& header, const std::string& key) {
  const size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) return "";
  size_t v = header.find(':', k);
  if (v == std::string::npos) return "";
  ++v;
  while (v < header.size() && header[v] == ' ') ++v;
  if (v < header.size() && header[v] == '(') return header.substr(v, header.find(')', v) - v + 1);
  size_t end = v;
  if (header[v] == '\'')
    end = header.find('\'', v + 1) + 1;
  else
    while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
  return header.substr(v, end - v);
}

struct Opened {
  File file;
  ArrayInfo info;
};

}  // namespace

int64_t ArrayInfo::count() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;  // open_array() checked that this cannot overflow
  return n;
}

int64_t ArrayInfo::row_count() const {
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}

Archive::Archive(const std::filesystem::path& path) : path_(path) {
  int err = 0;
  zip_ = zip_open(path.c_str(), ZIP_RDONLY, &err);
  if (!zip_) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, err);
    std::string why = zip_error_strerror(&ze);
    zip_error_fini(&ze);
    throw InputError(path.string(), "not a readable .npz (zip) archive: " + why);
  }
}

Archive::~Archive() {
  if (zip_) zip_discard(zip_);
}

std::vector<std::string> Archive::names() const {
  std::vector<std::string> out;
  const zip_int64_t n = zip_get_num_entries(zip_, 0);
  for (zip_int64_t i = 0; i < n; ++i) {
    std::string name = zip_get_name(zip_, static_cast<zip_uint64_t>(i), 0);
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0)
      out.push_back(name.substr(0, name.size() - 4));
  }
  return out;
}

bool Archive::has(const std::string& name) const {
  return zip_name_locate(zip_, (name + ".npy").c_str(), 0) >= 0;
}

static Opened open_array(zip_t* z, const std::filesystem::path& path, const std::string& name) {
  const std::string where = fmt::format("{}:{}.npy", path.string(), name);
  auto bad = [&](const std::string& why) { throw InputError(where, why); };
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat(z, (name + ".npy").c_str(), 0, &st) != 0) bad("no such array in the archive");
  File f(zip_fopen(z, (name + ".npy").c_str(), 0));
  if (!f) bad(std::string("cannot open: ") + zip_strerror(z));
  uint8_t pre[10];
  if (!read_exact(f.get(), pre, 8) || std::memcmp(pre, "\x93NUMPY", 6) != 0)
    bad("not a .npy array (bad magic)");
  const int major = pre[6];
  size_t header_len = 0, prefix = 0;
  if (major == 1) {
    if (!read_exact(f.get(), pre + 8, 2)) bad("truncated .npy header");
    header_len = pre[8] | (pre[9] << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    uint8_t len[4];
    if (!read_exact(f.get(), len, 4)) bad("truncated .npy header");
    header_len = len[0] | (len[1] << 8) | (len[2] << 16) | (static_cast<size_t>(len[3]) << 24);
    prefix = 12;
  } else {
    bad(fmt::format("unsupported .npy version {}", major));
  }
  if (header_len > (1u << 20)) bad("absurd .npy header length");
  std::string header(header_len, '\0');
  if (!read_exact(f.get(), header.data(), header_len)) bad("truncated .npy header");
  Opened o;
  std::string descr = dict_value(header, "descr");
  if (descr.size() < 3 || descr.front() != '\'') bad("header has no 'descr'");
  o.info.descr = descr.substr(1, descr.size() - 2);
  if (dict_value(header, "fortran_order").rfind("True", 0) == 0)
    bad("Fortran-order arrays are not supported");
  const std::string shape = dict_value(header, "shape");
  if (shape.empty() || shape.front() != '(') bad("header has no 'shape'");
  for (size_t i = 1; i < shape.size();) {
    while (i < shape.size() && (shape[i] == ' ' || shape[i] == ',' || shape[i] == ')')) ++i;
    if (i >= shape.size()) break;
    size_t used = 0;
    try {
      o.info.shape.push_back(std::stoll(shape.substr(i), &used));
    } catch (const std::exception&) {
      bad("bad 'shape' " + shape);
    }
    i += used;
  }
  const std::string& d = o.info.descr;
  if (d.size() < 3 || std::string("<>|=").find(d[0]) == std::string::npos)
    bad("unsupported dtype " + d);
  try {
    o.info.item_bytes = std::stoll(d.substr(2));
  } catch (const std::exception&) {
    bad("unsupported dtype " + d);
  }
  if (o.info.item_bytes < 1 || o.info.item_bytes > 16) bad("unsupported dtype " + d);
  // The payload the header promises, checked for overflow before anything is allocated.
  uint64_t payload = static_cast<uint64_t>(o.info.item_bytes);
  for (int64_t s : o.info.shape) {
    if (s < 0) bad("negative dimension in 'shape' " + shape);
    if (__builtin_mul_overflow(payload, static_cast<uint64_t>(s), &payload) ||
        payload > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      bad(fmt::format("'shape' {} overflows the addressable size", shape));
    }
  }
  if (!(st.valid & ZIP_STAT_SIZE)) bad("the archive does not record the array's size");
  if (st.size != prefix + header_len + payload) {
    bad(fmt::format("payload is {} bytes, the header announces {}", st.size - prefix - header_len,
                    payload));
  }
  o.file = std::move(f);
  return o;
}

ArrayInfo Archive::info(const std::string& name) const {
  return open_array(zip_, path_, name).info;
}

void Archive::for_each_row(
    const std::string& name,
    const std::function<void(int64_t, const uint8_t*, size_t)>& on_row) const {
  Opened o = open_array(zip_, path_, name);
  if (o.info.shape.empty())
    throw InputError(fmt::format("{}:{}.npy", path_.string(), name), "a scalar, not rows");
  const size_t row_bytes = static_cast<size_t>(o.info.row_count() * o.info.item_bytes);
  std::vector<uint8_t> row(row_bytes);
  for (int64_t i = 0; i < o.info.shape[0]; ++i) {
    if (!read_exact(o.file.get(), row.data(), row_bytes)) {
      throw InputError(fmt::format("{}:{}.npy", path_.string(), name),
                       fmt::format("truncated at row {}", i));
    }
    on_row(i, row.data(), row_bytes);
  }
}

std::vector<int64_t> Archive::read_int64(const std::string& name) const {
  Opened o = open_array(zip_, path_, name);
  const std::string& d = o.info.descr;
  const char kind = d[1];
  const int64_t size = o.info.item_bytes;
  if ((kind != 'b' && kind != 'i' && kind != 'u') ||
      (size != 1 && size != 2 && size != 4 && size != 8)) {
    throw InputError(fmt::format("{}:{}.npy", path_.string(), name),
                     "expected an integer array, got " + d);
  }
  const bool big = d[0] == '>';
  std::vector<uint8_t> raw(static_cast<size_t>(o.info.count() * size));
  if (!read_exact(o.file.get(), raw.data(), raw.size())) {
    throw InputError(fmt::format("{}:{}.npy", path_.string(), name), "truncated payload");
  }
  std::vector<int64_t> out(static_cast<size_t>(o.info.count()));
  for (size_t i = 0; i < out.size(); ++i) {
    uint64_t v = 0;
    for (int64_t b = 0; b < size; ++b) {
      const uint8_t byte = raw[i * size + (big ? b : size - 1 - b)];
      v = (v << 8) | byte;
    }
    if (kind == 'i' && size < 8 && (v >> (size * 8 - 1)) & 1)
      v |= ~uint64_t{0} << (size * 8);  // sign-extend
    out[i] = static_cast<int64_t>(v);
  }
  return out;
}

}  // namespace m3ret::data::npz
