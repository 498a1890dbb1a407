#include "trainer/trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <fstream>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/blas_threads.h"
#include "core/communicator.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/utc.h"
#include "model/augment.h"
#include "model/objective.h"
#include "sharding/shard_set.h"
#include "trainer/batch_transform.h"
#include "trainer/checkpoint.h"
#include "trainer/device.h"
#include "trainer/grad_sync.h"
#include "trainer/schedule.h"
#include "core/tensorboard.h"

namespace m3ret::trainer {

namespace {

std::atomic<int> g_stop{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void m3ret_trainer_on_stop_signal(int) { g_stop.store(1); }

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void configure_torch(const TrainConfig& cfg) {
  const int local_world = Runtime::initialized() ? Runtime::get().local_world() : 1;
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // The rank's share of the cores, given to OpenBLAS's GEMMs (core/blas_threads.h).
  torch::set_num_threads(split_compute_threads(std::max(1, hw / std::max(1, local_world))));
  if (cfg.deterministic) at::globalContext().setDeterministicAlgorithms(true, false);
}

// Eligible samples per sample group (sharding/shard_set.h): the groups of
// train.modalities present in the shards, restricted to train.split ("" = all).
std::map<std::string, std::vector<int64_t>> sample_pool(const sharding::ShardSet& shards,
                                                        const TrainConfig& cfg) {
  std::map<std::string, std::vector<int64_t>> pool;
  for (const auto& modality : cfg.modalities) {
    for (const auto& m : shards.groups_of(modality)) {  // endoscopy: videos and stills apart
      auto& v = pool[m];
      for (int64_t i = 0; i < shards.info(m).count; ++i)
        if (cfg.split.empty() || shards.meta(m, i).split == cfg.split) v.push_back(i);
      if (v.empty()) pool.erase(m);
    }
  }
  if (pool.empty())
    throw config::Error(
        fmt::format("train.modalities/train.split: no samples of split '{}' in "
                    "the shards for modalities [{}]",
                    cfg.split, fmt::join(cfg.modalities, ", ")));
  return pool;
}

// Patch tokens of one sample of the batch (a clip shorter than the tubelet
// counts as one tubelet in time).
int64_t tokens_per_sample(const sharding::LoadedBatch& b, const VitSpec& spec) {
  return std::max<int64_t>(1, b.T / spec.tube_t) * (b.H / spec.patch_h) * (b.W / spec.patch_w);
}

// The checkpoint to resume from, agreed by all ranks (rank 0 decides).
std::string resume_point(const TrainOptions& o, Communicator& comm) {
  std::string found;
  if (comm.rank() == 0) remove_stale_temporaries(o.run_dir);
  if (comm.rank() == 0 && o.resume_auto)
    if (auto ck = find_latest_valid(o.run_dir)) found = ck->string();
  comm.broadcast(found, 0);
  return found;
}

// TensorBoard scalars of a metrics line: the loss terms as "loss/<name>", the
// other numbers as "train/<name>" (lr, wd, grad_norm, samples_per_s, time_*_s, ...).
std::vector<std::pair<std::string, double>> tensorboard_scalars(
    const nlohmann::json& line, const std::vector<std::string>& loss_terms) {
  std::vector<std::pair<std::string, double>> out;
  for (auto& [k, v] : line.items()) {
    if (!v.is_number() || k == "step") continue;
    const bool term = std::find(loss_terms.begin(), loss_terms.end(), k) != loss_terms.end();
    out.emplace_back((term ? "loss/" : "train/") + k, v.get<double>());
  }
  return out;
}

// Keeps the lines of steps <= `last` (those the resumed checkpoint includes), so
// steps trained again after a resume are not logged twice.
void trim_metrics(const std::filesystem::path& file, int64_t last) {
  if (!std::filesystem::exists(file)) return;
  std::ifstream in(file);
  std::string kept;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.value("step", int64_t{0}) <= last)
      kept += line + "\n";
  }
  fs::write_atomic(file, kept);
}

// train.device of this rank, agreed by all ranks: a rank that cannot have it
// (a CPU-only build, no GPU) stops every rank with its reason, before any work.
torch::Device agreed_device(const TrainConfig& cfg, Communicator& comm) {
  const int local_rank = Runtime::initialized() ? Runtime::get().local_rank() : 0;
  torch::Device device(torch::kCPU);
  std::string why;
  try {
    device = resolve_device(cfg.device, local_rank);
  } catch (const config::Error& e) {
    why = e.what();
  }
  if (!comm.all(why.empty()))
    throw config::Error(why.empty() ? "train.device: \"" + cfg.device +
                                          "\" is not available on another rank (see its log)"
                                    : why);
  return device;
}

// The loader's transform of the run; on a GPU it also pins the prepared
// tensors (on the workers) so that the training thread copies them
// asynchronously.
sharding::BatchTransform device_batch_transform(sharding::BatchTransform inner,
                                                const torch::Device& device) {
  if (device.is_cpu()) return inner;
  return [inner = std::move(inner), device](sharding::LoadedBatch& b) {
    inner(b);
    for (auto& micro : prepared_step(b).micro) pin_batch(micro, device);
  };
}

}  // namespace

void install_preemption_handlers() {
  struct sigaction sa {};
  sa.sa_handler = m3ret_trainer_on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // A launcher may start us with them blocked (train --mpiexec blocks SIGTERM for mpiexec).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

std::vector<std::filesystem::path> previous_run_artifacts(const std::filesystem::path& run_dir) {
  std::vector<std::filesystem::path> out;
  for (const char* name : {"checkpoints", "metrics.jsonl", "tensorboard", "eval"}) {
    std::error_code ec;
    if (std::filesystem::exists(run_dir / name, ec)) out.push_back(run_dir / name);
  }
  return out;
}

void prepare_run_dir(const std::filesystem::path& run_dir, bool resume_auto, bool overwrite) {
  if (resume_auto && overwrite)
    throw Error("train: --resume auto and --overwrite exclude each other");
  const auto found = previous_run_artifacts(run_dir);
  if (found.empty() || resume_auto) return;
  fs::refuse_or_overwrite(run_dir,
                          {"train", "--run-dir", "a run", found, "continue it with --resume auto",
                           "which deletes them", found},
                          overwrite);
}

void request_stop() { g_stop.store(1); }
bool stop_requested() { return g_stop.load() != 0; }
void clear_stop_request() { g_stop.store(0); }

namespace {

// What the steps of a run share. Members are destroyed in reverse order: the
// loader (whose workers use the objective) before the reducer and the model.
struct Run {
  Run(const TrainOptions& options, Communicator& c)
      : o(options), s(options.settings), comm(c), rank(c.rank()), world(c.size()) {}

  const TrainOptions& o;
  const Settings& s;
  Communicator& comm;
  const int rank, world;
  int64_t per_rank = 0, accum = 1, micro_batch = 0;
  VitSpec spec;
  torch::Device device{torch::kCPU};
  bool bf16 = false;
  std::unique_ptr<sharding::ShardSet> shards;
  std::shared_ptr<Model> model;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::unique_ptr<Communicator> grad_comm;  // null: the gradients travel over `comm`
  std::unique_ptr<GradientReducer> reducer;
  std::unique_ptr<sharding::Loader> loader;
  std::ofstream metrics;                // rank 0: RUN/metrics.jsonl
  std::unique_ptr<EventWriter> events;  // rank 0: RUN/tensorboard
  int64_t start = 0, end = 0;           // the steps [start, end) this call trains
  std::vector<torch::Tensor> params;

  // The communicator of the gradient all-reduce (NCCL on a GPU, else `comm`).
  Communicator& gradients() { return grad_comm ? *grad_comm : comm; }
};

// The batch split (checked), the collective timeout, the agreed device, torch's
// threads and the run folder.
void start_up(Run& r) {
  const auto& t = r.s.train;
  r.per_rank = t.per_rank_batch(r.world);
  r.accum = t.grad_accum_steps;
  r.micro_batch = t.micro_batch(r.world);  // checks that accum divides
  r.spec = r.s.model.spec();
  r.comm.set_timeout(t.collective_timeout_s);
  r.comm.set_context("start-up");
  r.device = agreed_device(t, r.comm);
  r.bf16 = t.precision == "bf16";
  configure_torch(t);
  std::filesystem::create_directories(r.o.run_dir);
}

// Model and optimizer with the same initial weights on every rank, and the
// gradient reducer (over NCCL on a GPU, over MPI on the CPU).
void build_model(Run& r) {
  const auto& t = r.s.train;
  torch::manual_seed(static_cast<uint64_t>(t.seed));
  r.model = std::make_shared<Model>(r.s, &r.comm);
  broadcast_module(*r.model, r.comm);
  r.model->to(r.device);
  r.optimizer = make_optimizer(*r.model, t);
  r.grad_comm = gradient_communicator(r.device, r.comm, t.collective_timeout_s);
  r.reducer = std::make_unique<GradientReducer>(trainable_parameters(*r.model), r.gradients(),
                                                static_cast<size_t>(t.bucket_mb * (1 << 20)));
  spdlog::info("model: {} encoder parameters, {} in total, objective {}, on {} in {}",
               parameter_count(*r.model->encoder), parameter_count(*r.model), t.objective,
               r.device.str(), t.precision);
  spdlog::info("batch: {} per step over {} rank(s), {} micro-batch(es) of {} per rank",
               t.global_batch_size, r.world, r.accum, r.micro_batch);
}

// Loads the checkpoint all ranks agreed on, if any: weights, optimizer, RNG.
// Sets r.start and returns the sampler position to continue from.
int64_t resume(Run& r) {
  const auto ck = resume_point(r.o, r.comm);
  if (ck.empty()) return 0;
  auto st = load_checkpoint(ck, r.model.get(), r.optimizer.get(), /*restore_rng=*/true);
  // The trainer saves the sampler at the step after the last one trained.
  if (st.sampler_position != st.step)
    throw Error(fmt::format("{}/state.json: 'sampler_position' = {} does not match 'step' = {}", ck,
                            st.sampler_position, st.step));
  if (st.step > r.s.train.max_steps)
    throw config::Error(fmt::format("{}: the checkpoint's step {} is beyond train.max_steps = {}",
                                    ck, st.step, r.s.train.max_steps));
  r.start = st.step;
  spdlog::info("resuming from {} (step {})", ck, r.start);
  return st.sampler_position;
}

// The rank's sampler over `pool` at `position` and the loader, whose workers
// prepare the objective's inputs (batch_transform.h).
void start_loader(Run& r, std::map<std::string, std::vector<int64_t>> pool, int64_t position) {
  const auto& t = r.s.train;
  const auto seed = static_cast<uint64_t>(t.seed);
  torch::manual_seed(seed * 7919 + 17 * static_cast<uint64_t>(r.rank) + r.start);
  const auto datasets = r.o.loader.datasets.empty()  // dataset weights: each sample's dataset
                            ? std::map<std::string, std::vector<std::string>>{}
                            : sharding::pool_datasets(*r.shards, pool);
  sharding::DistributedSampler sampler(std::move(pool), r.per_rank, r.rank, r.world, seed,
                                       r.o.loader.mixing_config(), datasets);
  sampler.set_position(position);
  r.loader = std::make_unique<sharding::Loader>(
      *r.shards, std::move(sampler), r.o.loader,
      device_batch_transform(make_batch_transform(r.model->objective, seed, r.rank, r.accum),
                             r.device));
}

// Rank 0's metrics.jsonl (without the lines of steps after the resumed
// checkpoint) and TensorBoard writer.
void open_logs(Run& r) {
  if (r.rank != 0) return;
  trim_metrics(r.o.run_dir / "metrics.jsonl", r.start);
  r.metrics.open(r.o.run_dir / "metrics.jsonl", std::ios::app);
  r.events = std::make_unique<EventWriter>(r.o.run_dir / "tensorboard");
}

// A stop requested during start-up (all ranks agree) ends the run before its
// first step; the checkpoint it resumed from, if any, is still the newest.
bool stopped_during_start_up(Run& r) {
  r.comm.set_context("start-up");
  if (r.comm.all(!stop_requested())) return false;
  if (r.rank == 0)
    spdlog::warn("stop requested (SIGUSR1/SIGTERM) before the first step (step {}); exiting",
                 r.start);
  return true;
}

// The loss of one step on this rank, the mean over its micro-batches, and its
// terms: detached scalars on the model's device until the step reads them.
struct StepLoss {
  torch::Tensor value;
  std::map<std::string, torch::Tensor> terms;
};

// Gradient accumulation: each micro-batch's loss / accum is backpropagated
// into .grad (after the first step .grad lives in the reducer's buckets); only
// the last backward is synchronised. Nothing here waits for the device.
StepLoss forward_backward(Run& r, sharding::LoadedBatch& batch) {
  auto& micro = prepared_step(batch).micro;
  StepLoss out;
  const auto add = [&](torch::Tensor& sum, const torch::Tensor& t) {
    auto part = r.accum == 1 ? t.detach() : t.detach() / double(r.accum);
    sum = sum.defined() ? sum + part : part;
  };
  for (int64_t a = 0; a < r.accum; ++a) {
    auto& mb = micro[static_cast<size_t>(a)];
    batch_to_device(mb, r.device);
    Loss loss = [&] {
      Autocast autocast(r.bf16);
      return r.model->objective->compute(mb);
    }();
    add(out.value, loss.total);
    for (auto& [k, t] : loss.terms) add(out.terms[k], t);
    if (a + 1 == r.accum) r.reducer->arm();  // buckets are reduced as backward produces them
    (r.accum == 1 ? loss.total : loss.total / double(r.accum)).backward();
  }
  micro.clear();
  return out;
}

// Clips the averaged gradients, steps the optimizer and lets the objective
// follow (SimDINO's teacher). Returns the gradient norm before clipping (on
// the device).
torch::Tensor optimizer_update(Run& r, int64_t step) {
  auto grad_norm = clip_gradients(r.params, r.s.train.clip_grad);
  r.optimizer->step();
  r.model->objective->after_optimizer_step(step, r.s.train.max_steps);
  return grad_norm;
}

// The step's loss, its terms and the gradient norm, read on the host: the one
// place where a step waits for the device, after its last kernel is queued.
struct StepValues {
  double loss = 0, grad_norm = 0;
  std::map<std::string, double> terms;
};
StepValues read_step_values(const StepLoss& loss, const torch::Tensor& grad_norm) {
  const auto on = [&](const torch::Tensor& t) {
    return t.to(loss.value.device(), torch::kFloat64);
  };
  std::vector<torch::Tensor> all{on(loss.value), on(grad_norm)};
  for (const auto& [k, t] : loss.terms) all.push_back(on(t));
  const auto host = torch::stack(all).to(torch::kCPU);
  const double* v = host.data_ptr<double>();
  StepValues out{v[0], v[1], {}};
  size_t i = 2;
  for (const auto& [k, t] : loss.terms) out.terms[k] = v[i++];
  return out;
}

// The loss and its terms summed over ranks (each rank saw different samples),
// and whether any rank was asked to stop.
struct RankSums {
  std::vector<std::string> names;  // "loss", then the terms
  std::vector<double> sums;
  bool stop = false;
};

// One all-reduce: the stop flag travels with the loss terms, so every rank
// sees the same sum and stops after the same step.
RankSums sum_loss_and_stop(Communicator& comm, const StepValues& loss) {
  RankSums out{{"loss"}, {loss.loss}, false};
  for (auto& [k, v] : loss.terms) out.names.push_back(k), out.sums.push_back(v);
  out.sums.push_back(stop_requested() ? 1.0 : 0.0);
  comm.allreduce_sum(out.sums.data(), out.sums.size());
  out.stop = out.sums.back() > 0;
  out.sums.pop_back();
  return out;
}

// What a step measured, besides its loss.
struct StepStats {
  double lr = 0, wd = 0, grad_norm = 0;
  double t_data = 0, t_compute = 0, t_comm = 0, t_optim = 0, t_step = 0;
};

// Rank 0's line of metrics.jsonl for step `step` (0-based), its TensorBoard
// scalars and the progress bar's suffix.
void write_metrics(Run& r, int64_t step, const sharding::LoadedBatch& batch, const StepStats& st,
                   const RankSums& loss, log::Progress& progress) {
  const double samples_per_s = double(r.per_rank * r.world) / st.t_step;
  nlohmann::json line = {{"step", step + 1},
                         {"modality", batch.modality},
                         {"lr", st.lr},
                         {"wd", st.wd},
                         {"grad_norm", st.grad_norm},
                         {"samples_per_s", samples_per_s},
                         {"tokens_per_s", samples_per_s * double(tokens_per_sample(batch, r.spec))},
                         {"buckets", r.reducer->bucket_count()},
                         {"buckets_overlapped", r.reducer->stats().reduced_before_average},
                         {"time_data_s", st.t_data},
                         {"time_compute_s", st.t_compute},
                         {"time_comm_s", st.t_comm},
                         {"time_optim_s", st.t_optim}};
  for (size_t i = 0; i < loss.names.size(); ++i) line[loss.names[i]] = loss.sums[i] / r.world;
  const auto now = std::chrono::system_clock::now();
  line["time"] = utc_timestamp(now, 3);
  r.metrics << line.dump() << "\n";
  r.metrics.flush();
  r.events->scalars(step + 1, std::chrono::duration<double>(now.time_since_epoch()).count(),
                    tensorboard_scalars(line, loss.names));
  progress.set_suffix(fmt::format("loss {:.4f} lr {:.2e}", loss.sums[0] / r.world, st.lr));
}

// One optimizer step (0-based `step`): the batch, forward and backward over
// its micro-batches, the gradient average, the update and the metrics line.
// Returns whether any rank was asked to stop.
bool train_step(Run& r, int64_t step, log::Progress& progress) {
  r.gradients().set_context(fmt::format("step {}", step + 1));
  StepStats st;
  const auto t_step = Clock::now();
  auto batch = r.loader->next();
  st.t_data = seconds_since(t_step);
  st.lr = learning_rate(r.s.train, step);
  st.wd = weight_decay(r.s.train, step);
  set_learning_rate(*r.optimizer, st.lr);
  set_weight_decay(*r.optimizer, st.wd);
  zero_gradients(*r.optimizer);
  auto t0 = Clock::now();
  std::optional<HostSyncCheck> no_sync;  // from the first kernel of the step to its reading
  if (r.o.check_host_syncs) no_sync.emplace(r.device);
  const StepLoss loss = forward_backward(r, batch);
  st.t_compute = seconds_since(t0);
  r.reducer->average();
  st.t_comm = r.reducer->stats().exposed_s;  // communication not hidden by backward
  t0 = Clock::now();
  const auto grad_norm = optimizer_update(r, step);
  st.t_optim = seconds_since(t0);
  no_sync.reset();
  const StepValues values = read_step_values(loss, grad_norm);
  st.grad_norm = values.grad_norm;
  if (r.o.on_step) r.o.on_step(step + 1);
  const RankSums sums = sum_loss_and_stop(r.comm, values);
  // A non-finite loss on any rank makes every rank's sum non-finite: all stop
  // here, before a checkpoint could keep the step's update.
  if (!std::isfinite(sums.sums[0]))
    throw Error(fmt::format("training diverged: non-finite loss at step {} (modality {})", step + 1,
                            batch.modality));
  st.t_step = seconds_since(t_step);
  if (r.rank == 0) write_metrics(r, step, batch, st, sums, progress);
  progress.add(1);
  return sums.stop;
}

// Rank 0 writes the checkpoint of `step` (1-based); every rank learns whether
// it succeeded, and all throw if it did not.
void checkpoint_collectively(Run& r, int64_t step) {
  r.comm.set_context(fmt::format("checkpoint of step {}", step));
  bool ok = true;
  std::string error;
  if (r.rank == 0) {
    try {
      CheckpointState st{step, r.loader->position(), r.o.resolved_config_toml};
      auto dir = save_checkpoint(r.o.run_dir, st, *r.model, r.optimizer.get(), r.s.train.keep_last);
      spdlog::info("checkpoint {}", dir.string());
    } catch (const std::exception& e) {
      ok = false;
      error = e.what();
    }
  }
  if (!r.comm.all(ok)) throw Error("checkpoint failed on rank 0: " + error);
}

}  // namespace

TrainResult train(const TrainOptions& o, Communicator& comm) {
  Run r(o, comm);
  start_up(r);
  r.shards = sharding::ShardSet::open(o.shards);
  auto pool = sample_pool(*r.shards, r.s.train);
  build_model(r);
  const int64_t sampler_position = resume(r);
  start_loader(r, std::move(pool), sampler_position);
  open_logs(r);
  const auto& t = r.s.train;
  r.end = o.stop_after_steps > 0 ? std::min(o.stop_after_steps, t.max_steps) : t.max_steps;
  log::Progress progress("train", std::max<int64_t>(0, r.end - r.start), r.rank == 0);
  r.params = trainable_parameters(*r.model);
  r.model->train();
  if (stopped_during_start_up(r)) {
    progress.finish();
    return {r.start, true};
  }
  TrainResult result{r.start, false};
  for (int64_t step = r.start; step < r.end; ++step) {
    const bool stop = train_step(r, step, progress);
    const bool last = step + 1 == r.end;
    const bool due = t.checkpoint_every > 0 && (step + 1) % t.checkpoint_every == 0;
    result.step = step + 1;
    if (last || due || stop) checkpoint_collectively(r, step + 1);
    if (stop && !last) {
      if (r.rank == 0)
        spdlog::warn("stop requested (SIGUSR1/SIGTERM): checkpointed step {} of {}, exiting",
                     step + 1, t.max_steps);
      result.preempted = true;
      break;
    }
  }
  progress.finish();
  return result;
}

}  // namespace m3ret::trainer
