#include "model/simdino.h"

#include <cmath>

#include "core/communicator.h"
#include "core/error.h"
#include "model/augment.h"
#include "model/device.h"

namespace m3ret::trainer {

namespace F = torch::nn::functional;

torch::Tensor coding_rate(const torch::Tensor& z, double eps, int64_t world, Communicator* comm) {
  M3RET_CHECK(z.dim() == 2, "coding_rate expects Z [m, p], got {} dims", z.dim());
  NoAutocast no_autocast;  // a float64 statistic, also under bf16 autocast
  auto z64 = z.to(torch::kFloat64);
  const int64_t p = z64.size(1);
  const double m = static_cast<double>(z64.size(0));
  auto cov = torch::matmul(z64.t(), z64);  // [p, p]
  if (comm) world = comm->size();
  M3RET_CHECK(world >= 1, "coding_rate: world size {} < 1", world);
  if (comm && comm->size() > 1) {
    // A host communicator (MPI) sums a CPU copy of a GPU covariance.
    const bool host_copy = !cov.device().is_cpu() && !comm->device_memory();
    auto total = (host_copy ? cov.detach().to(torch::kCPU) : cov.detach().clone()).contiguous();
    comm->allreduce_sum(total.data_ptr<double>(), static_cast<size_t>(total.numel()));
    if (host_copy) total = total.to(cov.device());
    // Value: the global sum; gradient: world x the local one (see header).
    cov = total + (cov - cov.detach()) * static_cast<double>(world);
  }
  const double scale = static_cast<double>(p) / (m * static_cast<double>(world) * eps);
  auto a = torch::eye(p, z64.options()) + cov * scale;
  auto l = torch::linalg_cholesky(a);
  return l.diagonal().log().sum();  // 1/2 * logdet = sum(log(diag(L)))
}

double simdino_auto_gamma(int64_t p, int64_t m, int64_t world) {
  M3RET_CHECK(p >= 1 && m >= 1 && world >= 1, "simdino gamma: p = {}, m = {}, N = {} must be >= 1",
              p, m, world);
  const double pd = static_cast<double>(p),
               nm = static_cast<double>(world) * static_cast<double>(m);
  return (pd + nm) / (pd * nm);
}

SimDinoLoss simdino_loss(const std::vector<torch::Tensor>& teacher,
                         const std::vector<torch::Tensor>& student, const SimDinoLossOptions& opt) {
  const size_t G = teacher.size();
  M3RET_CHECK(G >= 1 && student.size() >= G,
              "SimDINO loss needs >= 1 teacher view and the student's global views first, "
              "got {} teacher and {} student views",
              G, student.size());
  torch::Tensor align = torch::zeros({}, student[0].options());
  int64_t pairs = 0;
  for (size_t i = 0; i < G; ++i)
    for (size_t j = 0; j < student.size(); ++j) {
      if (i == j) continue;
      align = align + (teacher[i] * student[j]).sum(-1).mean();
      ++pairs;
    }
  M3RET_CHECK(pairs > 0, "SimDINO loss needs at least two views");
  const int64_t world = opt.comm ? opt.comm->size() : opt.world;
  torch::Tensor rate = torch::zeros({}, student[0].options().dtype(torch::kFloat64));
  for (size_t g = 0; g < G; ++g) {
    auto e = opt.expand_with_teacher ? (student[g] + teacher[g].detach()) * 0.5 : student[g];
    rate = rate + coding_rate(e, opt.eps, world, opt.comm);
  }
  SimDinoLoss out;
  out.align = align / static_cast<double>(pairs);
  out.rate = (rate / static_cast<double>(G)).to(torch::kFloat32);
  out.gamma =
      opt.gamma ? *opt.gamma : simdino_auto_gamma(student[0].size(1), student[0].size(0), world);
  out.total = -opt.coeff * out.align - out.gamma * out.rate;
  return out;
}

double teacher_momentum(int64_t step, int64_t max_steps, double start, double end) {
  const double progress = max_steps > 0 ? std::min(1.0, double(step) / double(max_steps)) : 1.0;
  return end - (end - start) * (1.0 + std::cos(M_PI * progress)) / 2.0;
}

ProjectionHead::ProjectionHead(int64_t in, int64_t hidden, int64_t out) {
  fc1_ = register_module("fc1", torch::nn::Linear(in, hidden));
  fc2_ = register_module("fc2", torch::nn::Linear(hidden, hidden));
  fc3_ = register_module("fc3", torch::nn::Linear(hidden, out));
  init_weights(*this);
}

torch::Tensor ProjectionHead::forward(const torch::Tensor& x) {
  auto h = F::gelu(fc1_->forward(x));
  h = F::gelu(fc2_->forward(h));
  return F::normalize(fc3_->forward(h), F::NormalizeFuncOptions().dim(-1).p(2).eps(1e-12));
}

SimDino::SimDino(std::shared_ptr<Encoder> encoder, const SimDinoConfig& cfg, Communicator* comm)
    : encoder_(std::move(encoder)), spec_(encoder_->spec()), cfg_(cfg), comm_(comm) {
  const int64_t D = encoder_->width();
  head_ =
      register_module("head", std::make_shared<ProjectionHead>(D, cfg.head_hidden, cfg.head_out));
  VitSpec tspec = encoder_->spec();
  tspec.drop_path = 0.0;  // the teacher is deterministic
  teacher_encoder_ = register_module("teacher_encoder", std::make_shared<Encoder>(tspec));
  teacher_head_ = register_module(
      "teacher_head", std::make_shared<ProjectionHead>(D, cfg.head_hidden, cfg.head_out));
  for (auto& p : teacher_params()) p.set_requires_grad(false);
  update_teacher(0.0);  // teacher = student
}

std::vector<torch::Tensor> SimDino::student_params() const {
  auto p = encoder_->parameters();
  for (auto& h : head_->parameters()) p.push_back(h);
  return p;
}

std::vector<torch::Tensor> SimDino::teacher_params() const {
  auto p = teacher_encoder_->parameters();
  for (auto& h : teacher_head_->parameters()) p.push_back(h);
  return p;
}

void SimDino::update_teacher(double m) {
  torch::NoGradGuard no_grad;
  auto s = student_params();
  auto t = teacher_params();
  M3RET_CHECK(s.size() == t.size(), "teacher/student mismatch: {} vs {} tensors", t.size(),
              s.size());
  for (size_t i = 0; i < s.size(); ++i) t[i].mul_(m).add_(s[i].detach(), 1.0 - m);
}

void SimDino::after_optimizer_step(int64_t step, int64_t max_steps) {
  update_teacher(teacher_momentum(step, max_steps, cfg_.momentum_start, cfg_.momentum_end));
}

void SimDino::prepare(TrainBatch& batch) const {
  M3RET_CHECK(
      batch.images.defined() && batch.images.dim() == 5 && batch.images.size(0) == batch.size(),
      "simdino: prepare() needs images [B, C, T, H, W] and B seeds (step {}, {} seeds)", batch.step,
      batch.seeds.size());
  auto views = multi_crop(batch.images, batch.seeds, spec_, cfg_);
  SimDinoInput in;
  in.global = torch::cat(views.global, 0);
  if (!views.local.empty()) in.local = torch::cat(views.local, 0);
  batch.simdino = std::move(in);
}

Loss SimDino::compute(const TrainBatch& batch) {
  if (!batch.simdino)
    throw Error(
        fmt::format("simdino: the batch of step {} was not prepared (call "
                    "Objective::prepare() first; the trainer does it on the loader's "
                    "workers)",
                    batch.step));
  const SimDinoInput& views = *batch.simdino;
  const int64_t B = views.global.size(0) / 2;
  // Student: globals in one pass, locals in one pass (same shape within each).
  std::vector<torch::Tensor> student;  // per view [B, out]
  auto sg = head_->forward(encoder_->forward(views.global).select(1, 0));
  for (auto& part : sg.split(B, 0)) student.push_back(part);
  if (views.local.defined()) {
    auto sl = head_->forward(encoder_->forward(views.local).select(1, 0));
    for (auto& part : sl.split(B, 0)) student.push_back(part);
  }
  std::vector<torch::Tensor> teacher;
  {
    torch::NoGradGuard no_grad;
    auto tg = teacher_head_->forward(teacher_encoder_->forward(views.global).select(1, 0));
    for (auto& part : tg.split(B, 0)) teacher.push_back(part);
  }
  SimDinoLossOptions opt;
  opt.eps = cfg_.eps;
  opt.gamma = cfg_.gamma.value;
  opt.coeff = cfg_.coeff;
  opt.expand_with_teacher = cfg_.expansion_views == "student+teacher";
  opt.world = comm_ ? comm_->size() : 1;
  opt.comm = cfg_.allreduce_cov ? comm_ : nullptr;
  auto parts = simdino_loss(teacher, student, opt);
  Loss out;
  out.total = parts.total;
  out.terms["simdino"] = out.total.detach();
  out.terms["simdino_align"] = parts.align.detach();
  out.terms["simdino_rate"] = parts.rate.detach();
  out.terms["simdino_gamma"] =
      torch::full({}, parts.gamma, parts.rate.options().dtype(torch::kFloat64));
  return out;
}

}  // namespace m3ret::trainer
