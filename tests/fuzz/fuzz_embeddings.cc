// Embeddings files (eval/embeddings_file.h, what `m3ret eval`, `index` and `search` read): the
// input is written to a file and read by read_embeddings, which validates it or throws
// m3ret::Error. It reads the file in a forked child first (libhdf5 loops forever on some
// corrupt files: libhdf5-loops-in-H5Aread.h5 in the corpus), here with a 2 s time limit, well
// under run.sh's 10 s per input; the coverage that guides the fuzzer is that of the second,
// in-process read of the files the child read without error. Seeds: files written by
// write_embeddings (M3RET_FUZZ_WRITE_SEEDS, fuzz_util.h).
#include <cmath>

#include "eval/embeddings_file.h"
#include "fuzz_util.h"

namespace {

m3ret::eval::EmbeddingSet seed_set(int64_t n, int64_t d, bool sources) {
  static const char* kModalities[] = {"xray", "ct", "endoscopy"};
  m3ret::eval::EmbeddingSet s;
  s.N = n;
  s.D = d;
  for (int64_t i = 0; i < n * d; ++i) s.X.push_back(std::sin(static_cast<float>(i + 1)));
  for (int64_t i = 0; i < n; ++i) {
    s.ids.push_back("p" + std::to_string(i / 2) + "/s" + std::to_string(i));
    s.modality.push_back(kModalities[i % 3]);
    s.groups.push_back(i % 2 ? "" : "p" + std::to_string(i / 2));
    s.splits.push_back(i % 3 ? "train" : "test");
    if (sources) s.sources.push_back("images/" + std::to_string(i) + ".png");
    s.labels.push_back(i % 2 ? std::vector<std::string>{"a", "b"} : std::vector<std::string>{});
  }
  s.attrs.checkpoint = "run/checkpoints/step-000000006";
  s.attrs.step = 6;
  s.attrs.encoder = "checkpoint";
  s.attrs.weights = "teacher";
  s.attrs.pooling = "cls";
  s.attrs.preprocess = R"({"image_size":32})";
  s.attrs.train_modalities = {"xray", "ct"};
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // libhdf5 reads past its buffers on some files, in the reading child (fuzz_util.h).
  m3ret::fuzz::forked_children_die_quietly();
  m3ret::fuzz::write_seeds_if_asked([](const std::filesystem::path& dir) {
    m3ret::eval::write_embeddings(dir / "n5-d4.h5", seed_set(5, 4, true));
    auto raw = seed_set(1, 1, false);
    raw.attrs = {};
    raw.attrs.encoder = "raw-pixels";
    m3ret::eval::write_embeddings(dir / "n1-d1-raw.h5", raw);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = m3ret::fuzz::write_input("embeddings.h5", data, size);
  m3ret::fuzz::refuse_only_with_error([&] { (void)m3ret::eval::read_embeddings(path, {2}); });
  return 0;
}
