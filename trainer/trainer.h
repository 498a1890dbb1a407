// The training run: `m3ret train --shards SHARDS --run-dir RUN [--resume auto]`.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "model/settings.h"
#include "sharding/loader.h"

namespace m3ret {
class Communicator;
}

namespace m3ret::trainer {

struct TrainOptions {
  std::filesystem::path shards;      // folder written by `m3ret shard`
  std::filesystem::path run_dir;     // checkpoints/, metrics.jsonl (created if absent)
  bool resume_auto = false;          // continue from the newest valid checkpoint, if any
  std::string resolved_config_toml;  // stored in every checkpoint (config.toml)
  Settings settings;
  sharding::LoaderConfig loader;
  // Stop after this many steps (with a checkpoint), as a preempted job does;
  // the schedules still run to train.max_steps. 0 = run to train.max_steps.
  int64_t stop_after_steps = 0;
  // Called on every rank after each step's optimizer update (1-based step),
  // before the ranks exchange the stop flag: a test raises a signal mid-run here.
  std::function<void(int64_t)> on_step;
  // On a GPU, make any wait of the host for the device between a step's first kernel and the
  // reading of its loss an error (trainer/device.h: HostSyncCheck); tests and benchmarks set it.
  bool check_host_syncs = false;
};

// Exit code of `m3ret train` after a preemption checkpoint (SIGUSR1/SIGTERM):
// EX_TEMPFAIL, "try again" -- the job is requeued and resumes with --resume auto.
inline constexpr int kExitPreempted = 75;

// Installs SIGUSR1 and SIGTERM handlers that request a stop (async-signal-safe:
// they set a flag). Idempotent.
void install_preemption_handlers();
// Requests a stop as the signal handlers do; true once one was requested.
void request_stop();
bool stop_requested();
// Forgets a stop request (a test that trains again in the same process).
void clear_stop_request();

// What a previous run left in a run folder: checkpoints/, metrics.jsonl,
// tensorboard/ and eval/ (evaluations of its checkpoints).
std::vector<std::filesystem::path> previous_run_artifacts(const std::filesystem::path& run_dir);

// The rule for re-running into a run folder (call on one rank, before writing
// anything): a folder that holds a previous run's artifacts is continued
// (resume_auto) or cleared first (overwrite: previous_run_artifacts are
// deleted); otherwise an Error names the folder and both choices.
void prepare_run_dir(const std::filesystem::path& run_dir, bool resume_auto, bool overwrite);

struct TrainResult {
  int64_t step = 0;        // optimizer steps completed (the last checkpoint's step)
  bool preempted = false;  // stopped by a stop request, after a checkpoint
};

// Trains on every rank of `comm` (collective: all ranks call it with the same
// options). Rank 0 writes RUN/metrics.jsonl (one JSON object per step: step,
// modality, lr, loss and its terms, grad_norm, samples_per_s, time_data_s,
// time_compute_s, time_comm_s, time_optim_s) and the checkpoints (every
// train.checkpoint_every steps and at the end). Uses
// max(1, hardware threads / ranks on this node) torch threads.
// Throws m3ret::Error (config::Error for bad keys) on failure; a non-finite
// loss on any rank stops every rank with an error naming the step.
//
// Preemption: after every step the ranks all-reduce their stop flag; if any
// rank was asked to stop, every rank has finished the same step, rank 0 writes
// a checkpoint and train() returns {step, preempted = true}. A stop requested
// before the first step (during start-up) returns {start step, preempted =
// true} without a new checkpoint.
// Collectives use train.collective_timeout_s (a dead or stalled rank aborts the
// job with a message naming the step and the collective).
TrainResult train(const TrainOptions& options, Communicator& comm);

}  // namespace m3ret::trainer
