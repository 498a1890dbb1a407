#include "model/objective.h"

#include "core/error.h"
#include "model/mae.h"
#include "model/simdino.h"

namespace m3ret::trainer {

namespace {
// MAE and SimDINO on the same encoder: weighted sum of both losses.
class MaeSimDino : public Objective {
 public:
  MaeSimDino(std::shared_ptr<Encoder> encoder, const Settings& s, Communicator* comm)
      : w_mae_(s.mae.weight), w_simdino_(s.simdino.weight) {
    mae_ = register_module("mae", std::make_shared<Mae>(encoder, s.mae));
    simdino_ = register_module("simdino", std::make_shared<SimDino>(encoder, s.simdino, comm));
  }
  void prepare(TrainBatch& batch) const override {
    mae_->prepare(batch);
    simdino_->prepare(batch);
  }
  Loss compute(const TrainBatch& batch) override {
    Loss a = mae_->compute(batch), b = simdino_->compute(batch);
    Loss out;
    out.total = w_mae_ * a.total + w_simdino_ * b.total;
    out.terms = a.terms;
    out.terms.insert(b.terms.begin(), b.terms.end());
    return out;
  }
  void after_optimizer_step(int64_t step, int64_t max_steps) override {
    simdino_->after_optimizer_step(step, max_steps);
  }

 private:
  double w_mae_, w_simdino_;
  std::shared_ptr<Mae> mae_;
  std::shared_ptr<SimDino> simdino_;
};
}  // namespace

std::shared_ptr<Objective> make_objective(const Settings& s, std::shared_ptr<Encoder> encoder,
                                          Communicator* comm) {
  const auto& name = s.train.objective;
  if (name == "mae") return std::make_shared<Mae>(encoder, s.mae);
  if (name == "simdino") return std::make_shared<SimDino>(encoder, s.simdino, comm);
  if (name == "mae+simdino") return std::make_shared<MaeSimDino>(encoder, s, comm);
  throw config::Error("train.objective: unknown objective '" + name + "'");
}

Model::Model(const Settings& settings, Communicator* comm) {
  encoder = register_module("encoder", std::make_shared<Encoder>(settings.model.spec()));
  objective = register_module("objective", make_objective(settings, encoder, comm));
}

}  // namespace m3ret::trainer
