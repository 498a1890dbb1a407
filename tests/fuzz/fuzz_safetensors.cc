// Safetensors files (model/export.h, read_safetensors: what `m3ret export` writes and Python's
// safetensors may hand back): the input is read as a file, with its metadata; it gives tensors or
// an m3ret::Error. Seeds: files written by write_safetensors (M3RET_FUZZ_WRITE_SEEDS,
// fuzz_util.h).
#include <map>
#include <string>

#include "fuzz_util.h"
#include "model/export.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  m3ret::fuzz::write_seeds_if_asked([](const std::filesystem::path& dir) {
    using m3ret::trainer::write_safetensors;
    write_safetensors(dir / "dtypes.safetensors",
                      {{"f32", torch::arange(6, torch::kFloat32).reshape({2, 3})},
                       {"f64", torch::ones({1}, torch::kFloat64)},
                       {"i64", torch::arange(3, torch::kInt64)},
                       {"u8", torch::zeros({2, 1, 2}, torch::kUInt8)},
                       {"b", torch::ones({2}, torch::kBool)},
                       {"empty", torch::zeros({0, 4})}},
                      {{"format", "m3ret-encoder"}, {"step", "6"}});
    write_safetensors(dir / "scalar.safetensors", {{"s", torch::tensor(1.5f)}});
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = m3ret::fuzz::write_input("input.safetensors", data, size);
  m3ret::fuzz::refuse_only_with_error([&] {
    std::map<std::string, std::string> metadata;
    (void)m3ret::trainer::read_safetensors(path, &metadata);
  });
  return 0;
}
