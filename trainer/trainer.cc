#include "trainer/trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <fstream>
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
#include "trainer/tensorboard.h"

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

// Eligible samples per modality: train.modalities present in the shards,
// restricted to train.split ("" = all).
std::map<std::string, std::vector<int64_t>> sample_pool(const sharding::ShardSet& shards,
                                                        const TrainConfig& cfg) {
  std::map<std::string, std::vector<int64_t>> pool;
  for (const auto& m : cfg.modalities) {
    if (!shards.has(m)) continue;
    auto& v = pool[m];
    for (int64_t i = 0; i < shards.info(m).count; ++i)
      if (cfg.split.empty() || shards.meta(m, i).split == cfg.split) v.push_back(i);
    if (v.empty()) pool.erase(m);
  }
  if (pool.empty())
    throw config::Error(fmt::format("train.modalities/train.split: no samples of split '{}' in "
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
  if (!overwrite)
    throw Error(fmt::format(
        "train: {} already holds a run ({}); continue it with --resume auto, or start over in a "
        "new --run-dir or with --overwrite (which deletes them)",
        run_dir.string(), found.front().filename().string()));
  for (const auto& p : found) {
    std::filesystem::remove_all(p);
    spdlog::info("--overwrite: removed {}", p.string());
  }
}

void request_stop() { g_stop.store(1); }
bool stop_requested() { return g_stop.load() != 0; }
void clear_stop_request() { g_stop.store(0); }

TrainResult train(const TrainOptions& o, Communicator& comm) {
  const auto& s = o.settings;
  const int rank = comm.rank(), world = comm.size();
  const int64_t per_rank = s.train.per_rank_batch(world);
  const int64_t accum = s.train.grad_accum_steps;
  const int64_t micro_batch = s.train.micro_batch(world);  // checks that accum divides
  const VitSpec spec = s.model.spec();
  comm.set_timeout(s.train.collective_timeout_s);
  comm.set_context("start-up");
  const torch::Device device = agreed_device(s.train, comm);
  const bool bf16 = s.train.precision == "bf16";
  configure_torch(s.train);
  std::filesystem::create_directories(o.run_dir);

  // Data: the pool of samples per modality and the loader.
  auto shards = sharding::ShardSet::open(o.shards);
  auto pool = sample_pool(*shards, s.train);

  // Model and optimizer: the same initial weights on every rank.
  torch::manual_seed(static_cast<uint64_t>(s.train.seed));
  auto model = std::make_shared<Model>(s, &comm);
  broadcast_module(*model, comm);
  model->to(device);
  auto optimizer = make_optimizer(*model, s.train);
  // Gradients on a GPU travel over NCCL (device buffers), on the CPU over MPI.
  auto grad_comm = gradient_communicator(device, comm, s.train.collective_timeout_s);
  GradientReducer reducer(trainable_parameters(*model), grad_comm ? *grad_comm : comm,
                          static_cast<size_t>(s.train.bucket_mb * (1 << 20)));
  spdlog::info("model: {} encoder parameters, {} in total, objective {}, on {} in {}",
               parameter_count(*model->encoder), parameter_count(*model), s.train.objective,
               device.str(), s.train.precision);
  spdlog::info("batch: {} per step over {} rank(s), {} micro-batch(es) of {} per rank",
               s.train.global_batch_size, world, accum, micro_batch);

  // Resume.
  int64_t start = 0, sampler_position = 0;
  if (auto ck = resume_point(o, comm); !ck.empty()) {
    auto st = load_checkpoint(ck, model.get(), optimizer.get(), /*restore_rng=*/true);
    // The trainer saves the sampler at the step after the last one trained.
    if (st.sampler_position != st.step)
      throw Error(fmt::format("{}/state.json: 'sampler_position' = {} does not match 'step' = {}",
                              ck, st.sampler_position, st.step));
    if (st.step > s.train.max_steps)
      throw config::Error(fmt::format("{}: the checkpoint's step {} is beyond train.max_steps = {}",
                                      ck, st.step, s.train.max_steps));
    start = st.step;
    sampler_position = st.sampler_position;
    spdlog::info("resuming from {} (step {})", ck, start);
  }
  torch::manual_seed(static_cast<uint64_t>(s.train.seed) * 7919 + 17 * static_cast<uint64_t>(rank) + start);
  sharding::DistributedSampler sampler(pool, per_rank, rank, world,
                                       static_cast<uint64_t>(s.train.seed),
                                       o.loader.mixing_config());
  sampler.set_position(sampler_position);
  // The loader's workers prepare the objective's inputs (batch_transform.h).
  sharding::Loader loader(*shards, std::move(sampler), o.loader,
                          device_batch_transform(
                              make_batch_transform(model->objective,
                                                   static_cast<uint64_t>(s.train.seed), rank, accum),
                              device));

  std::ofstream metrics;
  std::unique_ptr<EventWriter> events;
  if (rank == 0) {
    trim_metrics(o.run_dir / "metrics.jsonl", start);
    metrics.open(o.run_dir / "metrics.jsonl", std::ios::app);
    events = std::make_unique<EventWriter>(o.run_dir / "tensorboard");
  }
  const int64_t end = o.stop_after_steps > 0 ? std::min(o.stop_after_steps, s.train.max_steps)
                                             : s.train.max_steps;
  log::Progress progress("train", std::max<int64_t>(0, end - start), rank == 0);
  auto params = trainable_parameters(*model);
  model->train();

  TrainResult result{start, false};
  // A stop requested during start-up (all ranks agree) ends the run before its
  // first step; the checkpoint it resumed from, if any, is still the newest.
  comm.set_context("start-up");
  if (!comm.all(!stop_requested())) {
    if (rank == 0)
      spdlog::warn("stop requested (SIGUSR1/SIGTERM) before the first step (step {}); exiting",
                   start);
    progress.finish();
    return {start, true};
  }
  for (int64_t step = start; step < end; ++step) {
    (grad_comm ? *grad_comm : comm).set_context(fmt::format("step {}", step + 1));
    const auto t_step = Clock::now();
    auto batch = loader.next();
    auto& micro = prepared_step(batch).micro;
    const double t_data = seconds_since(t_step);

    const double lr = learning_rate(s.train, step);
    const double wd = weight_decay(s.train, step);
    set_learning_rate(*optimizer, lr);
    set_weight_decay(*optimizer, wd);
    optimizer->zero_grad();
    auto t0 = Clock::now();
    // Gradient accumulation: each micro-batch's loss / accum is backpropagated
    // into .grad (after the first step .grad lives in the reducer's buckets);
    // only the last backward is synchronised.
    double value = 0;
    bool finite = true;
    std::map<std::string, double> terms;
    for (int64_t a = 0; a < accum; ++a) {
      auto& mb = micro[static_cast<size_t>(a)];
      batch_to_device(mb, device);
      Loss loss = [&] {
        Autocast autocast(bf16);
        return model->objective->compute(mb);
      }();
      const double v = loss.total.item<double>();
      finite = finite && std::isfinite(v);
      value += v / double(accum);
      for (auto& [k, t] : loss.terms) terms[k] += t / double(accum);
      const bool last_micro = a + 1 == accum;
      if (last_micro) {
        if (!comm.all(finite))
          throw Error(fmt::format("training diverged: non-finite loss at step {} (modality {})",
                                  step, batch.modality));
        reducer.arm();  // buckets are reduced as backward produces them
      }
      (accum == 1 ? loss.total : loss.total / double(accum)).backward();
    }
    micro.clear();
    const double t_compute = seconds_since(t0);

    reducer.average();
    const double t_comm = reducer.stats().exposed_s;  // communication not hidden by backward

    t0 = Clock::now();
    const double clip = s.train.clip_grad > 0 ? s.train.clip_grad : 1e300;
    const double grad_norm = torch::nn::utils::clip_grad_norm_(params, clip);
    optimizer->step();
    model->objective->after_optimizer_step(step, s.train.max_steps);
    const double t_optim = seconds_since(t0);
    if (o.on_step) o.on_step(step + 1);

    // Loss terms averaged over ranks (each rank saw different samples).
    std::vector<std::string> names = {"loss"};
    std::vector<double> values = {value};
    for (auto& [k, v] : terms) names.push_back(k), values.push_back(v);
    // The stop flag travels with the loss terms: every rank sees the same sum.
    names.push_back("_stop");
    values.push_back(stop_requested() ? 1.0 : 0.0);
    comm.allreduce_sum(values.data(), values.size());
    const bool stop = values.back() > 0;
    names.pop_back();
    values.pop_back();
    const double step_time = seconds_since(t_step);
    if (rank == 0) {
      const double samples_per_s = double(per_rank * world) / step_time;
      nlohmann::json line = {{"step", step + 1}, {"modality", batch.modality}, {"lr", lr},
                             {"wd", wd},
                             {"grad_norm", grad_norm},
                             {"samples_per_s", samples_per_s},
                             {"tokens_per_s", samples_per_s * double(tokens_per_sample(batch, spec))},
                             {"buckets", reducer.bucket_count()},
                             {"buckets_overlapped", reducer.stats().reduced_before_average},
                             {"time_data_s", t_data}, {"time_compute_s", t_compute},
                             {"time_comm_s", t_comm}, {"time_optim_s", t_optim}};
      for (size_t i = 0; i < names.size(); ++i) line[names[i]] = values[i] / world;
      const auto now = std::chrono::system_clock::now();
      line["time"] = utc_timestamp(now, 3);
      metrics << line.dump() << "\n";
      metrics.flush();
      events->scalars(step + 1, std::chrono::duration<double>(now.time_since_epoch()).count(),
                      tensorboard_scalars(line, names));
      progress.set_suffix(fmt::format("loss {:.4f} lr {:.2e}", values[0] / world, lr));
    }
    progress.add(1);

    const bool last = step + 1 == end;
    const bool due = s.train.checkpoint_every > 0 && (step + 1) % s.train.checkpoint_every == 0;
    result.step = step + 1;
    if (last || due || stop) {
      comm.set_context(fmt::format("checkpoint of step {}", step + 1));
      bool ok = true;
      std::string error;
      if (rank == 0) {
        try {
          CheckpointState st{step + 1, loader.position(), o.resolved_config_toml};
          auto dir = save_checkpoint(o.run_dir, st, *model, optimizer.get(), s.train.keep_last);
          spdlog::info("checkpoint {}", dir.string());
        } catch (const std::exception& e) {
          ok = false;
          error = e.what();
        }
      }
      if (!comm.all(ok)) throw Error("checkpoint failed on rank 0: " + error);
    }
    if (stop && !last) {
      if (rank == 0)
        spdlog::warn("stop requested (SIGUSR1/SIGTERM): checkpointed step {} of {}, exiting",
                     step + 1, s.train.max_steps);
      result.preempted = true;
      break;
    }
  }
  progress.finish();
  return result;
}

}  // namespace m3ret::trainer
