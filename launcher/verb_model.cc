// `m3ret model`: the encoder's size and cost without building it.
#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "launcher/verbs.h"
#include "model/model_info.h"

namespace m3ret::launcher {

void add_model_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "model",
      "Print the encoder's architecture, parameter count and forward FLOPs at an input "
      "shape ([model] of the config; --preset overrides model.preset)");
  auto opts = std::make_shared<CommonOptions>();
  auto preset = std::make_shared<std::string>();
  auto input = std::make_shared<std::vector<int64_t>>(std::vector<int64_t>{1, 224, 224});
  auto json = std::make_shared<bool>(false);
  opts->add_to(verb);
  verb->add_option("--preset", *preset,
                   "tiny, small, base, large or huge (= --set model.preset=NAME)");
  verb->add_option("--input", *input,
                   "input frames/slices, height, width: T H W or T,H,W (default 1 224 224)")
      ->delimiter(',')
      ->expected(3);
  verb->add_flag("--json", *json, "print JSON instead of text");
  verb->callback([opts, preset, input, json] {
    CommonOptions o = *opts;
    if (!preset->empty()) o.sets.push_back("model.preset=" + *preset);
    const auto cfg = o.load();
    const auto& mc = cfg.trainer.model;
    const auto spec = mc.spec();
    const auto& in = *input;
    for (auto v : in)
      if (v < 1)
        throw CLI::ValidationError("--input",
                                   fmt::format("{} {} {} must be positive", in[0], in[1], in[2]));
    // Token and FLOP counts are int64/double: refuse inputs whose voxel count would overflow them.
    constexpr double kMaxVoxels = 1125899906842624.0;  // 2^50
    if (static_cast<double>(in[0]) * static_cast<double>(in[1]) * static_cast<double>(in[2]) >
        kMaxVoxels)
      throw CLI::ValidationError(
          "--input", fmt::format("{} x {} x {} is more than 2^50 voxels", in[0], in[1], in[2]));
    const auto cost = trainer::encoder_forward_cost(spec, in[0], in[1], in[2]);
    const int64_t params = trainer::encoder_param_count(spec);
    nlohmann::json j = {
        {"preset", mc.preset},
        {"width", spec.width},
        {"depth", spec.depth},
        {"heads", spec.heads},
        {"mlp_ratio", spec.mlp_ratio},
        {"tubelet", {spec.tube_t, spec.patch_h, spec.patch_w}},
        {"stem", spec.stem},
        {"layerscale", spec.layerscale},
        {"drop_path", spec.drop_path},
        {"embedding", spec.mean_embedding ? "mean" : "cls"},
        {"encoder_params", params},
        {"input", {{"channels", 3}, {"frames", in[0]}, {"height", in[1]}, {"width", in[2]}}},
        {"grid", {cost.grid_t, cost.grid_h, cost.grid_w}},
        {"tokens", cost.tokens},
        {"forward_macs", cost.macs},
        {"forward_flops", cost.flops()},
        {"forward_gflops", cost.flops() / 1e9}};
    if (*json) {
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    std::printf(
        "encoder      %s: width %lld, depth %lld, heads %lld, tubelet %lldx%lldx%lld, %s stem\n",
        mc.preset.c_str(), (long long)spec.width, (long long)spec.depth, (long long)spec.heads,
        (long long)spec.tube_t, (long long)spec.patch_h, (long long)spec.patch_w,
        spec.stem.c_str());
    std::printf("parameters   %lld (%.2f M)\n", (long long)params, params / 1e6);
    std::printf("input        %lld x %lld x %lld -> grid %lld x %lld x %lld = %lld tokens + CLS\n",
                (long long)in[0], (long long)in[1], (long long)in[2], (long long)cost.grid_t,
                (long long)cost.grid_h, (long long)cost.grid_w, (long long)cost.tokens);
    std::printf("forward      %.2f GFLOPs (%.2f GMACs) per sample\n", cost.flops() / 1e9,
                cost.macs / 1e9);
  });
}

}  // namespace m3ret::launcher
