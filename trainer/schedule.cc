#include "trainer/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace m3ret::trainer {

double learning_rate(const TrainConfig& cfg, int64_t step) {
  if (step < cfg.warmup_steps) return cfg.lr * double(step + 1) / double(cfg.warmup_steps);
  const int64_t span = std::max<int64_t>(1, cfg.max_steps - cfg.warmup_steps);
  const double progress = std::min(1.0, double(step - cfg.warmup_steps) / double(span));
  return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

double weight_decay(const TrainConfig& cfg, int64_t step) {
  const double start = cfg.weight_decay, end = cfg.final_weight_decay();
  if (start == end) return start;
  const double progress =
      cfg.max_steps > 0 ? std::clamp(double(step) / double(cfg.max_steps), 0.0, 1.0) : 1.0;
  // = end + (start - end)(1 + cos)/2, written so that step 0 gives start exactly.
  return start + (end - start) * 0.5 * (1.0 - std::cos(M_PI * progress));
}

std::vector<torch::Tensor> trainable_parameters(torch::nn::Module& model) {
  std::vector<torch::Tensor> out;
  for (auto& p : model.parameters())
    if (p.requires_grad()) out.push_back(p);
  return out;
}

std::unique_ptr<torch::optim::AdamW> make_optimizer(torch::nn::Module& model,
                                                    const TrainConfig& cfg) {
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& item : model.named_parameters()) {
    const auto& p = item.value();
    if (!p.requires_grad()) continue;
    const auto& name = item.key();
    const bool is_token = name.size() >= 6 && name.compare(name.size() - 6, 6, "_token") == 0;
    (p.dim() >= 2 && !is_token ? decay : no_decay).push_back(p);
  }
  auto opts = torch::optim::AdamWOptions(cfg.lr).betas({0.9, 0.95});
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(opts).weight_decay(cfg.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(opts).weight_decay(0.0)));
  return std::make_unique<torch::optim::AdamW>(std::move(groups), opts);
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& g : optimizer.param_groups())
    static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
}

void set_weight_decay(torch::optim::Optimizer& optimizer, double wd) {
  auto& groups = optimizer.param_groups();
  M3RET_CHECK(groups.size() > kDecayGroup, "set_weight_decay: the optimizer has {} groups",
              groups.size());
  static_cast<torch::optim::AdamWOptions&>(groups[kDecayGroup].options()).weight_decay(wd);
}

}  // namespace m3ret::trainer
