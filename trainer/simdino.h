// SimDINO (Wu et al. 2025, arXiv 2502.10385): self-distillation from an EMA
// teacher with a coding-rate term instead of DINO's centering/sharpening.
//
//   loss = -mean_{i in global, j in views, j != i} mean_b cos(t_i[b], s_j[b])
//          - gamma * mean_{g in global} R_eps(S_g)
//   R_eps(Z) = 1/2 logdet(I_d + d / (b eps) Z^T Z),  Z [b, d]
//
// The teacher (encoder + head) is a copy of the student that is never trained:
// after every optimizer step t <- m t + (1 - m) s, with m on a cosine schedule
// from simdino.momentum_start to simdino.momentum_end.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "trainer/config.h"
#include "trainer/objective.h"
#include "trainer/vit.h"

namespace m3ret {
class Communicator;
}

namespace m3ret::trainer {

// R_eps(Z) for z [b, d] (any float dtype), computed in float64 via Cholesky;
// returns a float64 scalar, differentiable w.r.t. z. With `comm`, Z^T Z and b
// are summed over ranks (every rank gets the global value); the local
// gradient is scaled by the world size so that gradient averaging over ranks
// yields the gradient of the global R.
torch::Tensor coding_rate(const torch::Tensor& z, double eps, Communicator* comm = nullptr);

// The SimDINO loss from projected features (all [B, out], L2-normalised):
// teacher[i] for the G global views, student[j] for all views with the G
// global views first (same order as teacher). align = -mean over pairs
// (i, j != i) of mean_b <t_i, s_j>; rate = mean over g < G of R_eps(s_g);
// total = align - gamma * rate (float32). With `comm`, see coding_rate.
struct SimDinoLoss {
  torch::Tensor total, align, rate;
};
SimDinoLoss simdino_loss(const std::vector<torch::Tensor>& teacher,
                         const std::vector<torch::Tensor>& student, double eps, double gamma,
                         Communicator* comm = nullptr);

// Teacher momentum at `step` of `max_steps`: end - (end - start)(1 + cos(pi step / max))/2.
double teacher_momentum(int64_t step, int64_t max_steps, double start, double end);

// 3-layer MLP (GELU), L2-normalised output: [B, D] -> [B, out].
class ProjectionHead : public torch::nn::Module {
 public:
  ProjectionHead(int64_t in, int64_t hidden, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr}, fc3_{nullptr};
};

class SimDino : public Objective {
 public:
  SimDino(std::shared_ptr<Encoder> encoder, const SimDinoConfig& cfg, Communicator* comm);
  // batch.simdino = the multi-crop views of the batch (augment.h: multi_crop),
  // drawn from the samples' seeds.
  void prepare(TrainBatch& batch) const override;
  Loss compute(const TrainBatch& batch) override;
  void after_optimizer_step(int64_t step, int64_t max_steps) override;

  // teacher <- m * teacher + (1 - m) * student, parameter by parameter.
  void update_teacher(double m);
  Encoder& teacher_encoder() { return *teacher_encoder_; }
  ProjectionHead& head() { return *head_; }
  ProjectionHead& teacher_head() { return *teacher_head_; }

 private:
  std::vector<torch::Tensor> student_params() const;
  std::vector<torch::Tensor> teacher_params() const;
  std::shared_ptr<Encoder> encoder_;  // the student's encoder; shared, not registered
  VitSpec spec_;                      // the encoder's (prepare() reads only this and cfg_)
  SimDinoConfig cfg_;
  Communicator* comm_;  // not owned; used when cfg_.allreduce_cov
  std::shared_ptr<ProjectionHead> head_, teacher_head_;
  std::shared_ptr<Encoder> teacher_encoder_;
};

}  // namespace m3ret::trainer
