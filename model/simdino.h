// SimDINO (Wu et al. 2025, arXiv 2502.10385): self-distillation from an EMA
// teacher with a coding-rate term instead of DINO's centering/sharpening, as
// the reference implementation computes it (MCRLoss of RobinWu218/SimDINO):
//
//   align = mean_{i in global, j in views, j != i} mean_b <t_i[b], s_j[b]>
//   rate  = mean_{g in global} R(E_g),  R(Z) = 1/2 logdet(I_p + p / (m N eps) Z^T Z)
//   loss  = -coeff * align - gamma * rate
//
// with p = head output width, m = samples per rank (rows of Z), N = ranks,
// E_g = the student's global view g ("student") or (s_g + t_g) / 2
// ("student+teacher"), and gamma = (p + N m) / (p N m) by default ("auto",
// the reference's balancing factor). Features are L2-normalised head outputs.
//
// The teacher (encoder + head) is a copy of the student that is never trained:
// after every optimizer step t <- m t + (1 - m) s, with m on a cosine schedule
// from simdino.momentum_start to simdino.momentum_end.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include <torch/torch.h>

#include "model/config.h"
#include "model/objective.h"
#include "model/vit.h"

namespace m3ret {
class Communicator;
}

namespace m3ret::trainer {

// 1/2 logdet(I_p + p / (m N eps) Z^T Z) for z [m, p] (any float dtype),
// computed in float64 via Cholesky; returns a float64 scalar, differentiable
// w.r.t. z. N = `world` ranks. With `comm` (then N = comm->size()), Z^T Z is
// summed over ranks (every rank gets the global value) and the local gradient
// is scaled by N so that gradient averaging over ranks yields the gradient of
// the global value. Without it, each rank's own Z^T Z is scaled by
// p / (m N eps) all the same, as the reference does without reduce_cov.
torch::Tensor coding_rate(const torch::Tensor& z, double eps, int64_t world = 1,
                          Communicator* comm = nullptr);

// gamma = (p + N m) / (p N m): SimDINO's balancing factor for head width p,
// m samples per rank and N ranks.
double simdino_auto_gamma(int64_t p, int64_t m, int64_t world);

struct SimDinoLossOptions {
  double eps = 0.05;
  std::optional<double> gamma;       // empty: simdino_auto_gamma(p, m, world)
  double coeff = 1.0;                // weight of the alignment term
  bool expand_with_teacher = false;  // E_g = (s_g + t_g) / 2 instead of s_g
  int64_t world = 1;                 // N (comm->size() when comm is set)
  Communicator* comm = nullptr;      // sum Z^T Z over ranks (see coding_rate)
};

// The SimDINO loss from projected features (all [m, p], L2-normalised):
// teacher[i] for the G global views, student[j] for all views with the G
// global views first (same order as teacher); the formula at the top.
// align and rate are the unscaled terms (align > 0 when views agree), gamma
// the factor used: total = -coeff * align - gamma * rate (float32).
struct SimDinoLoss {
  torch::Tensor total, align, rate;
  double gamma = 0.0;
};
SimDinoLoss simdino_loss(const std::vector<torch::Tensor>& teacher,
                         const std::vector<torch::Tensor>& student,
                         const SimDinoLossOptions& options);

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
