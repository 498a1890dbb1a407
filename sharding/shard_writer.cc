#include "sharding/shard_writer.h"

#include <zlib.h>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"
#include "sharding/hdf5_util.h"

namespace m3ret::sharding {

using h5::check;
using h5::check_status;
using h5::Handle;
using h5::Hdf5Lock;

ShardWriter::ShardWriter(std::filesystem::path path, ShardHeader header)
    : path_(std::move(path)), header_(std::move(header)) {
  if (header_.compression < 0 || header_.compression > 9) {
    throw Error(fmt::format("{}: compression level {} is not in [0, 9]", path_.string(),
                            header_.compression));
  }
  if (header_.modality.empty()) throw Error(fmt::format("{}: empty modality", path_.string()));
  if (header_.clip_frames < 0 || header_.clip_stride < 1) {
    throw Error(fmt::format("{}: bad clip [{}, {}]", path_.string(), header_.clip_frames,
                            header_.clip_stride));
  }
  if (path_.has_parent_path()) std::filesystem::create_directories(path_.parent_path());
  tmp_ = fs::temp_sibling(path_);
  Hdf5Lock lock;
  Handle fcpl = check(H5Pcreate(H5P_FILE_CREATE), "create a property list", tmp_);
  check_status(H5Pset_obj_track_times(fcpl.get(), false), "set file properties", tmp_);
  Handle file = check(H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, fcpl.get(), H5P_DEFAULT),
                      "create the file", tmp_);
  file_ = file.release();  // closed in commit() or close_and_remove()
}

ShardWriter::~ShardWriter() {
  if (!committed_) close_and_remove();
}

void ShardWriter::close_and_remove() {
  {
    Hdf5Lock lock;
    if (pixels_ >= 0) H5Dclose(pixels_);
    if (file_ >= 0) H5Fclose(file_);
  }
  pixels_ = file_ = -1;
  std::error_code ec;
  if (!tmp_.empty()) std::filesystem::remove(tmp_, ec);
}

EncodedSample ShardWriter::encode(const data::Sample& s, int compression) {
  if (s.C < 1 || s.T < 1 || s.H < 1 || s.W < 1) {
    throw Error(fmt::format("sample '{}' ({}): bad shape [{}, {}, {}, {}]", s.id, s.source, s.C,
                            s.T, s.H, s.W));
  }
  if (static_cast<int64_t>(s.pixels.size()) != s.numel()) {
    throw Error(fmt::format("sample '{}' ({}): {} pixel bytes for shape [{}, {}, {}, {}]", s.id,
                            s.source, s.pixels.size(), s.C, s.T, s.H, s.W));
  }
  if (compression < 0 || compression > 9) {
    throw Error(fmt::format("compression level {} is not in [0, 9]", compression));
  }
  EncodedSample e;
  e.meta = SampleMeta{s.id, s.labels, s.group, s.split, s.source, s.dataset};
  e.modality = s.modality;
  e.C = s.C;
  e.T = s.T;
  e.H = s.H;
  e.W = s.W;
  if (compression == 0) {
    e.chunk = s.pixels;
    return e;
  }
  // The same zlib stream HDF5's deflate filter writes (compress2), so the
  // chunk can be stored directly and read back by any HDF5 reader.
  uLongf size = compressBound(static_cast<uLong>(s.pixels.size()));
  e.chunk.resize(size);
  int rc = compress2(e.chunk.data(), &size, s.pixels.data(), static_cast<uLong>(s.pixels.size()),
                     compression);
  if (rc != Z_OK) throw Error(fmt::format("sample '{}': zlib compress2 failed ({})", s.id, rc));
  e.chunk.resize(size);
  return e;
}

void ShardWriter::create_pixels(int64_t C, int64_t T, int64_t H, int64_t W) {
  hsize_t dims[5] = {0, hsize_t(C), hsize_t(T), hsize_t(H), hsize_t(W)};
  hsize_t maxdims[5] = {H5S_UNLIMITED, hsize_t(C), hsize_t(T), hsize_t(H), hsize_t(W)};
  hsize_t chunk[5] = {1, hsize_t(C), hsize_t(T), hsize_t(H), hsize_t(W)};
  Handle space = check(H5Screate_simple(5, dims, maxdims), "create the pixels space", tmp_);
  Handle dcpl = h5::untimed_dcpl(tmp_);
  check_status(H5Pset_chunk(dcpl.get(), 5, chunk), "set the pixels chunking", tmp_);
  if (header_.compression > 0) {
    check_status(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(header_.compression)),
                 "set the deflate filter", tmp_);
  }
  pixels_ = check(H5Dcreate2(file_, "pixels", H5T_STD_U8LE, space.get(), H5P_DEFAULT, dcpl.get(),
                             H5P_DEFAULT),
                  "create dataset pixels", tmp_)
                .release();
  C_ = C;
  T_ = T;
  H_ = H;
  W_ = W;
}

void ShardWriter::append(const data::Sample& sample) {
  append(encode(sample, header_.compression));
}

void ShardWriter::append(EncodedSample&& s) {
  M3RET_CHECK(!committed_, "{}: append after commit", path_.string());
  if (s.modality != data::group_modality(header_.modality)) {
    throw Error(fmt::format("{}: sample '{}' has modality '{}', the shard holds '{}'",
                            path_.string(), s.meta.id, s.modality, header_.modality));
  }
  if (header_.compression == 0 && static_cast<int64_t>(s.chunk.size()) != s.C * s.T * s.H * s.W) {
    throw Error(fmt::format("{}: sample '{}' is compressed but the shard stores raw pixels",
                            path_.string(), s.meta.id));
  }
  const uint32_t crc = chunk_crc(s.chunk.data(), s.chunk.size());  // outside the HDF5 lock
  Hdf5Lock lock;
  if (pixels_ < 0) {
    if ((header_.clip_frames - 1) * header_.clip_stride + 1 > s.T) {
      throw Error(
          fmt::format("{}: sample '{}' has {} frames, fewer than a clip of {} at stride {} needs",
                      path_.string(), s.meta.id, s.T, header_.clip_frames, header_.clip_stride));
    }
    create_pixels(s.C, s.T, s.H, s.W);
  } else if (s.C != C_ || s.T != T_ || s.H != H_ || s.W != W_) {
    throw Error(
        fmt::format("{}: sample '{}' has shape [{}, {}, {}, {}], the shard holds [{}, {}, "
                    "{}, {}]",
                    path_.string(), s.meta.id, s.C, s.T, s.H, s.W, C_, T_, H_, W_));
  }
  hsize_t n = metas_.size();
  hsize_t dims[5] = {n + 1, hsize_t(C_), hsize_t(T_), hsize_t(H_), hsize_t(W_)};
  check_status(H5Dset_extent(pixels_, dims), "extend dataset pixels", tmp_);
  hsize_t offset[5] = {n, 0, 0, 0, 0};
  check_status(H5Dwrite_chunk(pixels_, H5P_DEFAULT, 0, offset, s.chunk.size(), s.chunk.data()),
               "write a pixels chunk", tmp_);
  metas_.push_back(std::move(s.meta));
  crcs_.push_back(crc);
}

void ShardWriter::add_reject(const std::string& source, const std::string& reason) {
  rejected_sources_.push_back(source);
  rejected_reasons_.push_back(reason);
}

void ShardWriter::commit() {
  M3RET_CHECK(!committed_, "{}: committed twice", path_.string());
  int64_t rows =
      header_.rows > 0 ? header_.rows : count() + static_cast<int64_t>(rejected_sources_.size());
  if (rows != count() + static_cast<int64_t>(rejected_sources_.size())) {
    throw Error(fmt::format("{}: {} samples + {} rejects != {} rows covered", path_.string(),
                            count(), rejected_sources_.size(), rows));
  }
  {
    Hdf5Lock lock;
    if (pixels_ < 0) {  // every row rejected: an empty, contiguous pixels dataset
      hsize_t dims[5] = {0, 0, 0, 0, 0};
      Handle space = check(H5Screate_simple(5, dims, nullptr), "create the pixels space", tmp_);
      Handle dcpl = h5::untimed_dcpl(tmp_);
      Handle ds = check(H5Dcreate2(file_, "pixels", H5T_STD_U8LE, space.get(), H5P_DEFAULT,
                                   dcpl.get(), H5P_DEFAULT),
                        "create dataset pixels", tmp_);
    }
    h5::write_string_attr(file_, "format", kShardFormat, tmp_);
    h5::write_int_attr(file_, "format_version", {kShardFormatVersion}, tmp_);
    h5::write_string_attr(file_, "modality", header_.modality, tmp_);
    h5::write_int_attr(file_, "shape", {C_, T_, H_, W_}, tmp_);
    const bool whole = header_.clip_frames == 0;
    h5::write_int_attr(file_, "clip",
                       {whole ? T_ : header_.clip_frames, whole ? 1 : header_.clip_stride}, tmp_);
    h5::write_int_attr(file_, "compression", {header_.compression}, tmp_);
    h5::write_int_attr(file_, "first_row", {header_.first_row}, tmp_);
    h5::write_int_attr(file_, "rows", {rows}, tmp_);
    h5::write_string_attr(file_, "key", header_.key, tmp_);
    std::vector<std::string> ids, labels, groups, splits, sources, datasets;
    for (const auto& m : metas_) {
      ids.push_back(m.id);
      labels.push_back(join_labels(m.labels));
      groups.push_back(m.group);
      splits.push_back(m.split);
      sources.push_back(m.source);
      datasets.push_back(m.dataset);
    }
    h5::write_strings(file_, "ids", ids, tmp_);
    h5::write_strings(file_, "labels", labels, tmp_);
    h5::write_strings(file_, "groups", groups, tmp_);
    h5::write_strings(file_, "splits", splits, tmp_);
    h5::write_strings(file_, "sources", sources, tmp_);
    h5::write_strings(file_, "datasets", datasets, tmp_);
    h5::write_strings(file_, "rejected_sources", rejected_sources_, tmp_);
    h5::write_strings(file_, "rejected_reasons", rejected_reasons_, tmp_);
    h5::write_uint32s(file_, "pixel_crc", crcs_, tmp_);
    if (pixels_ >= 0) H5Dclose(pixels_);
    pixels_ = -1;
    herr_t st = H5Fclose(file_);
    file_ = -1;
    check_status(st, "close the file", tmp_);
  }
  fs::commit(tmp_, path_);
  committed_ = true;
}

}  // namespace m3ret::sharding
