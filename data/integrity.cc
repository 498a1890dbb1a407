#include "data/integrity.h"

#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <vector>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

namespace m3ret::data::integrity {

std::string not_a_regular_file(const std::filesystem::path& path) {
  namespace stdfs = std::filesystem;
  std::error_code ec;
  const stdfs::file_status st = stdfs::status(path, ec);  // follows symbolic links
  if (st.type() == stdfs::file_type::not_found) return "does not exist";
  if (ec) return "cannot stat: " + ec.message();
  switch (st.type()) {
    case stdfs::file_type::regular:
      return "";
    case stdfs::file_type::directory:
      return "not a regular file (a directory)";
    case stdfs::file_type::fifo:
      return "not a regular file (a FIFO)";
    case stdfs::file_type::socket:
      return "not a regular file (a socket)";
    case stdfs::file_type::block:
    case stdfs::file_type::character:
      return "not a regular file (a device)";
    default:
      return "not a regular file";
  }
}

bool is_png(const std::filesystem::path& path) {
  unsigned char sig[8] = {0};
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(sig), 8);
  return in.gcount() == 8 && png_sig_cmp(sig, 0, 8) == 0;
}

namespace {

struct PngState {
  char message[256] = {0};
  int64_t max_pixels = 0;
  png_uint_32 width = 0, height = 0;  // set when the header promises more than max_pixels
};

void on_png_error(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof(st->message), "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}

void on_png_warning(png_structp, png_const_charp) {}

// Plain C control flow only between setjmp and longjmp: no C++ objects with
// destructors live in this frame.
int decode_png(FILE* f, PngState* st) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, st, on_png_error, on_png_warning);
  if (!png) return -1;
  png_infop info = png_create_info_struct(png);
  unsigned char* volatile row = nullptr;
  if (!info || setjmp(png_jmpbuf(png))) {
    std::free(row);
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    return -1;
  }
  png_init_io(png, f);
  png_read_info(png, info);
  if (static_cast<double>(png_get_image_width(png, info)) * png_get_image_height(png, info) >
      static_cast<double>(st->max_pixels)) {
    st->width = png_get_image_width(png, info);
    st->height = png_get_image_height(png, info);
    png_destroy_read_struct(&png, &info, nullptr);
    return -2;
  }
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const png_uint_32 height = png_get_image_height(png, info);
  row = static_cast<unsigned char*>(std::malloc(png_get_rowbytes(png, info) + 16));
  if (!row) png_error(png, "out of memory");
  for (int p = 0; p < passes; ++p)
    for (png_uint_32 y = 0; y < height; ++y) png_read_row(png, row, nullptr);
  png_read_end(png, nullptr);
  std::free(row);
  png_destroy_read_struct(&png, &info, nullptr);
  return 0;
}

}  // namespace

std::string too_many_pixels(const std::vector<int64_t>& shape, int64_t max_pixels) {
  double n = 1;
  for (int64_t s : shape) n *= static_cast<double>(s);
  if (n <= static_cast<double>(max_pixels)) return "";
  std::string dims;
  for (int64_t s : shape) dims += (dims.empty() ? "" : "x") + std::to_string(s);
  char count[32];
  std::snprintf(count, sizeof(count), "%.0f", n);
  return "absurd image size " + dims + ": " + count +
         " pixels, more than preprocess.max_input_pixels = " + std::to_string(max_pixels) +
         " (refused before decoding)";
}

std::string png_error(const std::filesystem::path& path, int64_t max_pixels) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return std::string("cannot open: ") + std::strerror(errno);
  PngState st;
  st.max_pixels = max_pixels;
  const int rc = decode_png(f, &st);
  std::fclose(f);
  if (rc == 0) return "";
  if (rc == -2) return too_many_pixels({st.width, st.height}, max_pixels);
  return std::string("corrupt PNG: ") + (st.message[0] ? st.message : "unreadable");
}

bool is_jpeg(const std::filesystem::path& path) {
  unsigned char sig[3] = {0};
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(sig), 3);
  return in.gcount() == 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF;
}

namespace {

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  int64_t max_pixels = 0;
  JDIMENSION width = 0, height = 0;  // set when the header promises more than max_pixels
};

void on_jpeg_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void on_jpeg_message(j_common_ptr cinfo, int level) {
  if (level < 0) on_jpeg_error(cinfo);  // corrupt-data warnings are errors here
}

// Plain C control flow only between setjmp and longjmp.
int decode_jpeg(FILE* f, JpegError* err) {
  jpeg_decompress_struct cinfo;
  JSAMPLE* volatile row = nullptr;
  cinfo.err = jpeg_std_error(&err->mgr);
  err->mgr.error_exit = on_jpeg_error;
  err->mgr.emit_message = on_jpeg_message;
  if (setjmp(err->jump)) {
    std::free(row);
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_stdio_src(&cinfo, f);
  jpeg_read_header(&cinfo, TRUE);
  if (static_cast<double>(cinfo.image_width) * cinfo.image_height >
      static_cast<double>(err->max_pixels)) {
    err->width = cinfo.image_width;
    err->height = cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    return -2;
  }
  jpeg_start_decompress(&cinfo);
  row = static_cast<JSAMPLE*>(
      std::malloc(static_cast<size_t>(cinfo.output_width) * cinfo.output_components));
  if (!row) return -1;
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW rows[1] = {row};
    jpeg_read_scanlines(&cinfo, rows, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  std::free(row);
  return 0;
}

}  // namespace

std::string jpeg_error(const std::filesystem::path& path, int64_t max_pixels) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return std::string("cannot open: ") + std::strerror(errno);
  JpegError err;
  err.message[0] = 0;
  err.max_pixels = max_pixels;
  const int rc = decode_jpeg(f, &err);
  std::fclose(f);
  if (rc == 0) return "";
  if (rc == -2) return too_many_pixels({err.width, err.height}, max_pixels);
  return std::string("corrupt JPEG: ") + (err.message[0] ? err.message : "unreadable");
}

std::string dicom_meta_error(const std::filesystem::path& path) {
  // Preamble (128) + "DICM" (4) + (0002,0000) UL element: tag (4), VR (2),
  // length (2), value (4), explicit VR little endian by definition.
  unsigned char head[144] = {0};
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(head), sizeof(head));
  const auto got = in.gcount();
  if (got < 132 || std::memcmp(head + 128, "DICM", 4) != 0) return "";
  if (got < 144) return "truncated DICOM file meta information";
  if (!(head[132] == 0x02 && head[133] == 0x00 && head[134] == 0x00 && head[135] == 0x00 &&
        head[136] == 'U' && head[137] == 'L')) {
    return "DICOM file meta information does not start with its group length (0002,0000)";
  }
  const uint32_t group_len =
      head[140] | (head[141] << 8) | (head[142] << 16) | (static_cast<uint32_t>(head[143]) << 24);
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec || size < 144ull + group_len) return "truncated DICOM file meta information";
  return "";
}

void NonFiniteScan::operator()(const uint8_t* p, size_t n) {
  size_t i = 0;
  if (pos_ < offset_) {
    const size_t skip =
        static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(n), offset_ - pos_));
    i = skip;
    pos_ += static_cast<int64_t>(skip);
  }
  for (; i < n && ok_; ++i) {
    elem_[filled_++] = p[i];
    if (filled_ < bytes_) continue;
    filled_ = 0;
    uint8_t v[8];
    for (int b = 0; b < bytes_; ++b) v[b] = swap_ ? elem_[bytes_ - 1 - b] : elem_[b];
    if (bytes_ == 4) {
      float f;
      std::memcpy(&f, v, 4);
      ok_ = std::isfinite(f);
    } else {
      double d;
      std::memcpy(&d, v, 8);
      ok_ = std::isfinite(d);
    }
  }
}

int64_t payload_bytes(const std::filesystem::path& path, std::string& reason,
                      const std::function<void(const uint8_t*, size_t)>& sink) {
  const std::string name = path.filename().string();
  if (name.size() < 3 || name.compare(name.size() - 3, 3, ".gz") != 0) {
    std::error_code ec;
    auto size = std::filesystem::file_size(path, ec);
    if (ec) {
      reason = ec.message();
      return -1;
    }
    if (sink) {
      std::ifstream in(path, std::ios::binary);
      std::vector<char> buf(1 << 16);
      while (in) {
        in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        if (in.gcount() > 0)
          sink(reinterpret_cast<const uint8_t*>(buf.data()), static_cast<size_t>(in.gcount()));
      }
    }
    return static_cast<int64_t>(size);
  }
  gzFile gz = gzopen(path.c_str(), "rb");
  if (!gz) {
    reason = "cannot open gzip stream";
    return -1;
  }
  static thread_local char buf[1 << 16];
  int64_t total = 0;
  for (;;) {
    int n = gzread(gz, buf, sizeof(buf));
    if (n < 0) {
      int err = 0;
      const char* msg = gzerror(gz, &err);
      reason = std::string("corrupt or truncated gzip stream: ") + (msg ? msg : "");
      gzclose(gz);
      return -1;
    }
    if (n == 0) break;
    if (sink) sink(reinterpret_cast<const uint8_t*>(buf), static_cast<size_t>(n));
    total += n;
  }
  int err = 0;
  const char* msg = gzerror(gz, &err);
  if (err != Z_OK && err != Z_STREAM_END) {
    reason = std::string("corrupt or truncated gzip stream: ") + (msg ? msg : "");
    gzclose(gz);
    return -1;
  }
  gzclose(gz);
  return total;
}

}  // namespace m3ret::data::integrity
