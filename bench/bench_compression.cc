// Benchmark (not a test): HDF5 chunking/compression options for shard pixels,
// stored bytes against decode (and encode) samples/s on one core.
//
//   bench_compression SHARDS_DIR OUT_DIR [SECONDS]
//
// Reads the stored pixels of every modality of SHARDS_DIR (the first shard
// file of each, all its samples: uint8 [N, C, T, H, W], what `m3ret shard`
// stored, all F frames of a video) and writes them again into OUT_DIR once per
// option, one chunk per sample as m3ret's shards do, through HDF5's own filter
// pipeline: none, deflate 1/4/6/9, shuffle + deflate 4, szip (when the HDF5
// library has its encoder), scale-offset. Each file is then read back one
// sample at a time (H5Dread of one chunk, decode included) for at least
// SECONDS seconds (default 2). One thread throughout. Prints one markdown
// row per (modality, option): stored bytes per sample, ratio to raw, encode
// and decode samples/s and decode MB/s of raw pixels. Filters HDF5 does not
// have are listed as unavailable. lzf is h5py's own filter, not part of
// libhdf5: a C++ reader would need an HDF5 plugin for it.
#include <hdf5.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Pixels {
  std::string modality;
  hsize_t dims[5] = {0, 0, 0, 0, 0};
  std::vector<uint8_t> bytes;
  size_t sample_bytes() const { return size_t(dims[1] * dims[2] * dims[3] * dims[4]); }
};

struct Option {
  std::string name;
  H5Z_filter_t needs;                   // filter that must be available (H5Z_FILTER_NONE: none)
  std::function<void(hid_t dcpl)> set;  // adds the filters to a dataset creation list
};

void check(herr_t st, const std::string& what) {
  if (st < 0) throw std::runtime_error("HDF5 failed to " + what);
}

hid_t check_id(hid_t id, const std::string& what) {
  if (id < 0) throw std::runtime_error("HDF5 failed to " + what);
  return id;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

Pixels read_pixels(const fs::path& file, const std::string& modality) {
  Pixels p;
  p.modality = modality;
  hid_t f = check_id(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open " + file.string());
  hid_t ds = check_id(H5Dopen2(f, "pixels", H5P_DEFAULT), "open pixels in " + file.string());
  hid_t space = H5Dget_space(ds);
  H5Sget_simple_extent_dims(space, p.dims, nullptr);
  p.bytes.resize(size_t(p.dims[0]) * p.sample_bytes());
  if (!p.bytes.empty()) {
    check(H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.bytes.data()), "read");
  }
  H5Sclose(space);
  H5Dclose(ds);
  H5Fclose(f);
  return p;
}

std::vector<Option> options() {
  auto deflate = [](unsigned level) {
    return [level](hid_t dcpl) { check(H5Pset_deflate(dcpl, level), "set deflate"); };
  };
  return {
      {"none", H5Z_FILTER_NONE, [](hid_t) {}},
      {"deflate 1", H5Z_FILTER_DEFLATE, deflate(1)},
      {"deflate 4", H5Z_FILTER_DEFLATE, deflate(4)},
      {"deflate 6", H5Z_FILTER_DEFLATE, deflate(6)},
      {"deflate 9", H5Z_FILTER_DEFLATE, deflate(9)},
      {"shuffle + deflate 4", H5Z_FILTER_DEFLATE,
       [](hid_t dcpl) {
         check(H5Pset_shuffle(dcpl), "set shuffle");
         check(H5Pset_deflate(dcpl, 4), "set deflate");
       }},
      {"szip (nn, 32 px/block)", H5Z_FILTER_SZIP,
       [](hid_t dcpl) { check(H5Pset_szip(dcpl, H5_SZIP_NN_OPTION_MASK, 32), "set szip"); }},
      {"scale-offset (int, auto bits)", H5Z_FILTER_SCALEOFFSET,
       [](hid_t dcpl) {
         check(H5Pset_scaleoffset(dcpl, H5Z_SO_INT, H5Z_SO_INT_MINBITS_DEFAULT),
               "set scale-offset");
       }},
  };
}

bool available(H5Z_filter_t filter) {
  if (filter == H5Z_FILTER_NONE) return true;
  unsigned info = 0;
  return H5Zfilter_avail(filter) > 0 && H5Zget_filter_info(filter, &info) >= 0 &&
         (info & H5Z_FILTER_CONFIG_ENCODE_ENABLED) && (info & H5Z_FILTER_CONFIG_DECODE_ENABLED);
}

// Writes all samples one chunk each; returns the encode seconds.
double write_file(const fs::path& file, const Pixels& p, const Option& o) {
  hid_t f = check_id(H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "create");
  hsize_t chunk[5] = {1, p.dims[1], p.dims[2], p.dims[3], p.dims[4]};
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  check(H5Pset_chunk(dcpl, 5, chunk), "set chunk");
  o.set(dcpl);
  hid_t space = H5Screate_simple(5, p.dims, nullptr);
  hid_t ds = check_id(H5Dcreate2(f, "pixels", H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                      "create ds");
  hid_t mspace = H5Screate_simple(5, chunk, nullptr);
  const auto t0 = Clock::now();
  for (hsize_t i = 0; i < p.dims[0]; ++i) {
    hsize_t offset[5] = {i, 0, 0, 0, 0};
    check(H5Sselect_hyperslab(space, H5S_SELECT_SET, offset, nullptr, chunk, nullptr), "select");
    check(H5Dwrite(ds, H5T_NATIVE_UINT8, mspace, space, H5P_DEFAULT,
                   p.bytes.data() + i * p.sample_bytes()),
          "write a sample");
  }
  H5Dclose(ds);
  H5Fclose(f);
  const double s = seconds_since(t0);
  H5Sclose(mspace);
  H5Sclose(space);
  H5Pclose(dcpl);
  return s;
}

// Reads samples round-robin for at least `seconds`; returns samples/s.
double read_rate(const fs::path& file, const Pixels& p, double seconds) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  check(H5Pset_cache(fapl, 0, 0, 0, 0.0), "disable the chunk cache");  // as a random read
  hid_t f = check_id(H5Fopen(file.c_str(), H5F_ACC_RDONLY, fapl), "open");
  hid_t ds = H5Dopen2(f, "pixels", H5P_DEFAULT);
  hid_t space = H5Dget_space(ds);
  hsize_t chunk[5] = {1, p.dims[1], p.dims[2], p.dims[3], p.dims[4]};
  hid_t mspace = H5Screate_simple(5, chunk, nullptr);
  std::vector<uint8_t> out(p.sample_bytes());
  int64_t n = 0;
  const auto t0 = Clock::now();
  do {
    hsize_t offset[5] = {hsize_t(n) % p.dims[0], 0, 0, 0, 0};
    check(H5Sselect_hyperslab(space, H5S_SELECT_SET, offset, nullptr, chunk, nullptr), "select");
    check(H5Dread(ds, H5T_NATIVE_UINT8, mspace, space, H5P_DEFAULT, out.data()), "read");
    if (std::equal(out.begin(), out.end(), p.bytes.begin() + offset[0] * p.sample_bytes()) ==
        false) {
      throw std::runtime_error(file.string() + ": a sample read back differs (lossy filter)");
    }
    ++n;
  } while (seconds_since(t0) < seconds);
  const double rate = double(n) / seconds_since(t0);
  H5Sclose(mspace);
  H5Sclose(space);
  H5Dclose(ds);
  H5Fclose(f);
  H5Pclose(fapl);
  return rate;
}

void bench_modality(const Pixels& p, const fs::path& out, double seconds) {
  const auto opts = options();
  for (size_t k = 0; k < opts.size(); ++k) {
    const Option& o = opts[k];
    if (!available(o.needs)) {
      std::printf("| %s | %s | unavailable in this HDF5 | | | | |\n", p.modality.c_str(),
                  o.name.c_str());
      continue;
    }
    const fs::path file = out / (p.modality + "-" + std::to_string(k) + ".h5");
    const double enc = write_file(file, p, o);
    const double per_sample = double(fs::file_size(file)) / double(p.dims[0]);
    const double dec = read_rate(file, p, seconds);
    std::printf("| %s | %s | %.0f | %.3f | %.1f | %.1f | %.1f |\n", p.modality.c_str(),
                o.name.c_str(), per_sample, per_sample / double(p.sample_bytes()),
                double(p.dims[0]) / enc, dec, dec * double(p.sample_bytes()) / 1e6);
    std::fflush(stdout);
    fs::remove(file);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s SHARDS_DIR OUT_DIR [SECONDS]\n", argv[0]);
    return 2;
  }
  const fs::path shards = argv[1], out = argv[2];
  const double seconds = argc > 3 ? std::atof(argv[3]) : 2.0;
  try {
    fs::create_directories(out);
    std::printf(
        "| modality | option | stored bytes/sample | of raw | encode samples/s | decode samples/s "
        "| decode MB/s (raw) |\n|---|---|---|---|---|---|---|\n");
    for (const char* m : {"xray", "ultrasound", "endoscopy", "ct", "mri", "other"}) {
      const fs::path first = shards / m / "shard-00000.h5";
      if (!fs::exists(first)) continue;
      Pixels p = read_pixels(first, m);
      std::printf(
          "| %s | raw [C, T, H, W] = [%llu, %llu, %llu, %llu], %llu samples | %zu | 1 | | | |\n", m,
          (unsigned long long)p.dims[1], (unsigned long long)p.dims[2],
          (unsigned long long)p.dims[3], (unsigned long long)p.dims[4],
          (unsigned long long)p.dims[0], p.sample_bytes());
      bench_modality(p, out, seconds);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_compression: %s\n", e.what());
    return 1;
  }
  return 0;
}
