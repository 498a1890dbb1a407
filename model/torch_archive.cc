#include "model/torch_archive.h"

#include <zip.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "data/isolate.h"

namespace m3ret::trainer {

namespace stdfs = std::filesystem;

namespace {

[[noreturn]] void refuse(const stdfs::path& file, const std::string& why) {
  throw Error(fmt::format("{}: not a valid LibTorch archive: {}", file.string(), why));
}

// How a pickle opcode's argument is encoded (Python's pickletools, protocols 0 to 5).
enum class Arg { kNone, kFixed, kLine, kTwoLines, kCounted, kUnknown };
struct OpSpec {
  Arg arg = Arg::kUnknown;
  int width = 0;  // bytes of the fixed argument or of the count
};

OpSpec op_spec(unsigned char op) {
  static const std::map<unsigned char, OpSpec> specs = [] {
    std::map<unsigned char, OpSpec> m;
    for (unsigned char c : std::string("(.012NQRabde}l]ost)u\x81\x85\x86\x87\x88\x89\x8f\x90\x91"
                                       "\x92\x93\x94"))
      m[c] = {Arg::kNone, 0};
    for (unsigned char c : std::string("Khq\x80\x82")) m[c] = {Arg::kFixed, 1};
    for (unsigned char c : std::string("M\x83")) m[c] = {Arg::kFixed, 2};
    for (unsigned char c : std::string("Jjr\x84")) m[c] = {Arg::kFixed, 4};
    for (unsigned char c : std::string("G\x95")) m[c] = {Arg::kFixed, 8};
    for (unsigned char c : std::string("FILPSVgp")) m[c] = {Arg::kLine, 0};
    for (unsigned char c : std::string("ci")) m[c] = {Arg::kTwoLines, 0};
    for (unsigned char c : std::string("UC\x8c\x8a")) m[c] = {Arg::kCounted, 1};
    for (unsigned char c : std::string("TXB\x8b")) m[c] = {Arg::kCounted, 4};
    for (unsigned char c : std::string("\x8d\x8e")) m[c] = {Arg::kCounted, 8};
    return m;
  }();
  auto it = specs.find(op);
  return it == specs.end() ? OpSpec{} : it->second;
}

uint64_t read_le(const std::string& s, size_t pos, int width) {
  uint64_t v = 0;
  for (int i = width - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[pos + i]);
  return v;
}

// Walks the opcodes of one pickle record; "" when it is well-formed, else why not.
std::string check_pickle(const std::string& p) {
  size_t pos = 0;
  for (uint64_t ops = 0; pos < p.size(); ++ops) {
    const size_t at = pos;
    const unsigned char op = static_cast<unsigned char>(p[pos++]);
    if (op == '.') return "";  // STOP
    const OpSpec spec = op_spec(op);
    const size_t left = p.size() - pos;
    const auto at_byte = [&](const std::string& what) {
      return fmt::format("opcode 0x{:02x} at byte {}: {}", op, at, what);
    };
    if (spec.arg == Arg::kUnknown) return at_byte("not a pickle opcode");
    if (spec.arg == Arg::kLine || spec.arg == Arg::kTwoLines) {
      size_t end = p.find('\n', pos);
      if (end != std::string::npos && spec.arg == Arg::kTwoLines) end = p.find('\n', end + 1);
      if (end == std::string::npos) return at_byte("its text argument has no end of line");
      pos = end + 1;
      continue;
    }
    if (static_cast<size_t>(spec.width) > left) return at_byte("its argument runs past the end");
    const uint64_t value = read_le(p, pos, spec.width);
    pos += static_cast<size_t>(spec.width);
    if (spec.arg == Arg::kCounted || op == 0x95) {  // a length (FRAME: of the frame)
      if (value > p.size() - pos)
        return at_byte(
            fmt::format("declares {} bytes but the record has {} left", value, p.size() - pos));
      if (spec.arg == Arg::kCounted) pos += static_cast<size_t>(value);
    } else if ((op == 'q' || op == 'r') && value > ops) {  // BINPUT, LONG_BINPUT
      return at_byte(fmt::format("memo index {} after only {} opcodes", value, ops));
    }
  }
  return "the pickle ends without STOP";
}

// LibTorch's TorchScript importer crashes on some mutated code/ sources of an archive, which no
// check can foresee: load_torch_archive reads the archive in a forked child first, within
// kReadSecondsBase s plus 1 s per kReadBytesPerSecond bytes and kReadMemoryBaseMb MB plus 4 times
// the file's size.
constexpr int64_t kReadSecondsBase = 30, kReadBytesPerSecond = int64_t{16} << 20,
                  kReadMemoryBaseMb = 4096;

// The most deflate can expand: 258 bytes from 2 bits of a block (1032 to 1).
constexpr uint64_t kMaxDeflateRatio = 1032;

struct ZipCloser {
  void operator()(zip_t* z) const { zip_discard(z); }
};
struct ZipFileCloser {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};

// The bytes of entry `i`, whose size (checked against the file) is `size`.
std::string read_entry(zip_t* z, zip_uint64_t i, uint64_t size, const stdfs::path& file,
                       const char* name) {
  std::unique_ptr<zip_file_t, ZipFileCloser> f(zip_fopen_index(z, i, 0));
  if (!f) refuse(file, fmt::format("cannot open entry '{}': {}", name, zip_strerror(z)));
  std::string bytes(size, '\0');
  const zip_int64_t got = zip_fread(f.get(), bytes.data(), size);
  if (got < 0 || static_cast<uint64_t>(got) != size)
    refuse(file, fmt::format("entry '{}' is truncated or corrupt ({})", name,
                             zip_file_strerror(f.get())));
  return bytes;
}

void check_entry(zip_t* z, zip_uint64_t i, uint64_t file_size, const stdfs::path& file) {
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(z, i, 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME) ||
      !(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE) ||
      !(st.valid & ZIP_STAT_COMP_METHOD))
    refuse(file, fmt::format("cannot read entry {} of the zip directory: {}", i, zip_strerror(z)));
  // LibTorch allocates the size an entry declares: stored entries must fit in the file, and
  // deflated ones (its code/ sources) cannot expand more than deflate can.
  const bool stored = st.comp_method == ZIP_CM_STORE;
  if (!stored && st.comp_method != ZIP_CM_DEFLATE)
    refuse(file, fmt::format("entry '{}' is compressed with method {}; LibTorch reads stored or "
                             "deflated entries",
                             st.name, st.comp_method));
  if (st.comp_size > file_size || (stored && st.size != st.comp_size) ||
      (!stored && st.size / kMaxDeflateRatio > st.comp_size))
    refuse(file,
           fmt::format("entry '{}' declares {} bytes from {} {} bytes in a file of {} bytes",
                       st.name, st.size, stored ? "stored" : "deflated", st.comp_size, file_size));
  const std::string name = st.name;
  if (name.size() > 4 && name.compare(name.size() - 4, 4, ".pkl") == 0) {
    const std::string why = check_pickle(read_entry(z, i, st.size, file, st.name));
    if (!why.empty()) refuse(file, fmt::format("pickle record '{}': {}", name, why));
  }
}

}  // namespace

void check_torch_archive(const stdfs::path& file) {
  std::error_code ec;
  const uint64_t file_size = stdfs::file_size(file, ec);
  if (ec) throw Error(fmt::format("{}: cannot read: {}", file.string(), ec.message()));
  int err = 0;
  std::unique_ptr<zip_t, ZipCloser> z(zip_open(file.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &err));
  if (!z) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, err);
    const std::string why = zip_error_strerror(&ze);
    zip_error_fini(&ze);
    refuse(file, "not a readable zip archive (" + why + ")");
  }
  const zip_int64_t n = zip_get_num_entries(z.get(), 0);
  if (n <= 0) refuse(file, "the zip archive has no entries");
  for (zip_int64_t i = 0; i < n; ++i)
    check_entry(z.get(), static_cast<zip_uint64_t>(i), file_size, file);
}

namespace {
// What LibTorch says when `read` throws (its message without the C++ backtrace), or "" when it
// does not.
template <class Read>
std::string libtorch_refusal(Read&& read) {
  try {
    read();
  } catch (const c10::Error& e) {  // what LibTorch refuses, e.g. a mutated pickle
    return e.what_without_backtrace();
  } catch (const std::exception& e) {  // e.g. torch::jit::ErrorReport on a mutated code/ source
    std::string why = e.what();
    why.erase(0, why.find_first_not_of(" \n"));
    return why.empty() ? std::string("LibTorch refused it") : why;
  }
  return "";
}
}  // namespace

void load_torch_archive(torch::serialize::InputArchive& archive, const stdfs::path& file,
                        c10::optional<torch::Device> device) {
  check_torch_archive(file);
  std::error_code ec;
  const auto size = static_cast<int64_t>(stdfs::file_size(file, ec));
  data::isolate::Limits limits;
  limits.timeout_s = kReadSecondsBase + size / kReadBytesPerSecond;
  limits.memory_mb = kReadMemoryBaseMb + 4 * (size >> 20);
  limits.task = "reading it with LibTorch";
  limits.timeout_setting = limits.memory_setting = "";
  // The child's verdict is final: LibTorch's importer follows wild pointers on some mutated
  // sources, so whether a read crashes or throws depends on the heap, and the parent (another
  // heap) must never retry what the child could not load. A refusal comes back as its message.
  std::string refused;
  try {
    refused = data::isolate::run(
        file.string(),
        [](const std::string& path) {
          return libtorch_refusal([&] {
            torch::serialize::InputArchive trial;
            trial.load_from(path, torch::Device(torch::kCPU));
          });
        },
        file.string(), limits);
  } catch (const InputError& e) {  // crashed, out of time or memory
    refuse(file, e.reason());
  }
  if (!refused.empty()) refuse(file, refused);
  const std::string why = libtorch_refusal([&] { archive.load_from(file.string(), device); });
  if (!why.empty()) refuse(file, why);
}

void load_module(torch::nn::Module& module, torch::serialize::InputArchive& archive,
                 const stdfs::path& file) {
  std::map<std::string, std::pair<std::vector<int64_t>, c10::ScalarType>> expected;
  const auto record = [&](const std::string& name, const torch::Tensor& t) {
    expected[name] = {t.sizes().vec(), t.scalar_type()};
  };
  for (const auto& p : module.named_parameters()) record(p.key(), p.value());
  for (const auto& b : module.named_buffers()) record(b.key(), b.value());
  module.load(archive);
  const auto check = [&](const std::string& name, const torch::Tensor& t) {
    const auto& [sizes, dtype] = expected.at(name);
    if (t.sizes().vec() != sizes || t.scalar_type() != dtype)
      throw Error(fmt::format("{}: tensor '{}' is {} [{}], the model expects {} [{}]",
                              file.string(), name, c10::toString(t.scalar_type()),
                              fmt::join(t.sizes(), ", "), c10::toString(dtype),
                              fmt::join(sizes, ", ")));
  };
  for (const auto& p : module.named_parameters()) check(p.key(), p.value());
  for (const auto& b : module.named_buffers()) check(b.key(), b.value());
}

}  // namespace m3ret::trainer
