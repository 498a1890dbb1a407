// NumPy .npz archives (data/npz.h, `m3ret import medmnist`): every array's header, rows and
// integer values, or an m3ret::Error.
#include "data/npz.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = m3ret::fuzz::write_input("input.npz", data, size);
  m3ret::fuzz::refuse_only_with_error([&] {
    m3ret::data::npz::Archive archive(path);
    for (const auto& name : archive.names()) {
      m3ret::fuzz::refuse_only_with_error([&] {
        const auto info = archive.info(name);
        if (info.count() <= (1 << 20)) {
          archive.for_each_row(name, [](int64_t, const uint8_t*, size_t) {});
          m3ret::fuzz::refuse_only_with_error([&] { archive.read_int64(name); });
        }
      });
    }
  });
  return 0;
}
