// The manifest CSV (data/manifest.h): any bytes are rows or an m3ret::Error.
#include "data/manifest.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = m3ret::fuzz::write_input("manifest.csv", data, size);
  m3ret::fuzz::refuse_only_with_error([&] { m3ret::data::read_manifest(path, false); });
  return 0;
}
