// Model benchmark (not a test): forward+backward of the encoder with MAE, per
// preset and input shape, against the same step in PyTorch-Python eager in the
// same run. Figures: docs/performance.md.
//
//   bench_model [--threads T] [--iters N] [--python /usr/bin/python3] [--cases tiny,base]
//
// For each case: the encoder and the MAE decoder (model/vit.h, model/mae.h)
// with the default MAE decoder (512 wide, 8 blocks) and mask ratio (0.75 for
// images, 0.9 for clips), one fixed batch and tube mask. One step = prepare,
// encoder on the visible tokens, decoder, per-patch-normalised MSE, backward
// into every weight. The same weights, inputs and mask are written as
// safetensors and bench/bench_model_reference.py runs the same step with
// torch.nn.functional (tests/model/golden_reference.py's model) on the same
// number of threads. Each side: 2 warm-up steps, then the median of N.
// Prints a markdown table: ms per step for both and the ratio m3ret / PyTorch.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <unistd.h>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/blas_threads.h"
#include "model/config.h"
#include "model/export.h"
#include "model/mae.h"
#include "model/vit.h"

using namespace m3ret::trainer;
using Clock = std::chrono::steady_clock;

namespace {

struct Case {
  const char* preset;
  int64_t batch, frames, size;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, iters = 5;
  std::string python = "/usr/bin/python3", only;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads"))
      threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--iters"))
      iters = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--python"))
      python = argv[i + 1];
    else if (!std::strcmp(argv[i], "--cases"))
      only = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  // m3ret's thread split (core/blas_threads.h): the GEMMs on OpenBLAS's pool.
  torch::set_num_threads(m3ret::split_compute_threads(threads));
  const auto src = std::filesystem::path(M3RET_SOURCE_DIR);
  const auto tmp = std::filesystem::temp_directory_path() / fmt::format("bench_model_{}", getpid());
  std::filesystem::create_directories(tmp);
  const Case cases[] = {{"tiny", 8, 1, 64},
                        {"tiny", 2, 16, 64},
                        {"small", 4, 1, 224},
                        {"base", 2, 1, 224},
                        {"base", 1, 16, 224}};
  std::printf(
      "| preset | input B x T x H x W | tokens (visible) | m3ret ms/step | PyTorch ms/step "
      "| m3ret / PyTorch |\n|---|---|---|---|---|---|\n");
  for (const auto& c : cases) {
    if (!only.empty() && only.find(c.preset) == std::string::npos) continue;
    torch::manual_seed(0);
    ModelConfig mc;
    mc.preset = c.preset;
    MaeConfig mae;
    const auto spec = mc.spec();
    Encoder enc(spec);
    MaeDecoder dec(spec.width, mae, spec.tube_t * spec.patch_h * spec.patch_w * 3);
    auto x = torch::rand({c.batch, 1, c.frames, c.size, c.size});
    auto prepared = enc.prepare(x);
    const Grid grid = enc.grid_of(prepared);
    std::vector<uint64_t> seeds;
    for (int64_t b = 0; b < c.batch; ++b) seeds.push_back(100 + b);
    auto mask =
        random_tube_mask(grid, grid.t == 1 ? mae.mask_ratio_image : mae.mask_ratio_video, seeds);
    auto params = enc.parameters();
    for (auto& p : dec.parameters()) params.push_back(p);
    auto step = [&] {
      for (auto& p : params) p.mutable_grad() = torch::Tensor();
      auto pre = enc.prepare(x);
      auto pred = dec.forward(enc.forward_visible(pre, mask.keep), mask.keep, grid);
      auto loss =
          mae_loss(pred, patchify(pre, spec.tube_t, spec.patch_h, spec.patch_w), mask.mask, true);
      loss.backward();
    };
    for (int i = 0; i < 2; ++i) step();
    std::vector<double> ms;
    for (int i = 0; i < iters; ++i) {
      auto t0 = Clock::now();
      step();
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    const double ours = median(ms);

    NamedTensors weights = encoder_tensors(enc);
    for (const auto& p : dec.named_parameters())
      weights.emplace_back("decoder." + p.key(), p.value());
    write_safetensors(
        tmp / "w.safetensors", weights,
        {{"heads", std::to_string(spec.heads)},
         {"depth", std::to_string(spec.depth)},
         {"tubelet", fmt::format("[{}, {}, {}]", spec.tube_t, spec.patch_h, spec.patch_w)},
         {"decoder_heads", std::to_string(mae.decoder_heads)},
         {"decoder_depth", std::to_string(mae.decoder_depth)},
         {"eps", "0.05"},
         {"gamma", "1"}});
    write_safetensors(tmp / "in.safetensors", {{"x", x}, {"keep", mask.keep}});
    const auto cmd = fmt::format(
        "{} {} {} {} {} {} {}", python, (src / "bench" / "bench_model_reference.py").string(),
        (tmp / "w.safetensors").string(), (tmp / "in.safetensors").string(), threads, iters,
        (src / "tests" / "model").string());
    FILE* pipe = popen(cmd.c_str(), "r");
    double theirs = -1;
    if (pipe) {
      if (std::fscanf(pipe, "%lf", &theirs) != 1) theirs = -1;
      pclose(pipe);
    }
    std::printf("| %s | %lld x %lld x %lld x %lld | %lld (%lld) | %.1f | %.1f | %.2f |\n", c.preset,
                (long long)c.batch, (long long)c.frames, (long long)c.size, (long long)c.size,
                (long long)grid.tokens(), (long long)mask.keep.size(1), ours, theirs,
                theirs > 0 ? ours / theirs : 0.0);
    std::fflush(stdout);
  }
  std::filesystem::remove_all(tmp);
  return 0;
}
