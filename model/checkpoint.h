// Checkpoints: RUN/checkpoints/step-000001000/ (format "m3ret-checkpoint" v1).
//
//   model.pt        torch archive of the Model (encoder, objective parts, teacher)
//   optimizer.pt    torch archive of the optimizer state (absent if none)
//   rng.pt          torch's default CPU generator state (uint8 tensor)
//   rng_cuda.pt     the default CUDA generator state of the model's GPU (only when
//                   the model trained on one; restored when it resumes on a GPU)
//   state.json      {"format", "version", "step", "sampler_position"}
//   config.toml     the resolved configuration of the run
//   manifest.json   {"format", "version", "step", "files": {name: "crc32:..."}}
//
// A checkpoint is written into a hidden temporary folder
// (.tmp-step-000001000-HOST-PID) and renamed when complete, so a folder named
// step-* is always whole (a failed write, e.g. a full disk, removes the
// temporary and leaves the previous checkpoints as they were); `checkpoints/latest` (a
// text file written atomically) names the newest. A checkpoint is valid when
// its manifest is readable and every listed file matches its checksum.
//
// Device-independent: model.pt holds CPU tensors whatever device trained the
// model, and reading puts the weights and the optimizer state on the device of
// the model's parameters, so a checkpoint written on a GPU resumes on the CPU
// and back.
//
// This header is the format and its reading (what loading an encoder, export
// and resuming need); writing is the trainer's (trainer/checkpoint.h). Written
// by one rank (rank 0); reading is safe from any number of ranks.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace m3ret::trainer {

inline constexpr const char* kCheckpointFormat = "m3ret-checkpoint";
inline constexpr int kCheckpointVersion = 1;
// The largest step (and sampler position) a checkpoint may record.
inline constexpr int64_t kMaxCheckpointStep = int64_t{1} << 40;

struct CheckpointState {
  int64_t step = 0;              // optimizer steps completed
  int64_t sampler_position = 0;  // the sampler's position to resume from
  std::string config_toml;       // resolved configuration (TOML text)
};

// "step-000001000"
std::string checkpoint_name(int64_t step);

// The step-* folders of run_dir/checkpoints, newest first (valid or not).
std::vector<std::filesystem::path> checkpoint_folders(const std::filesystem::path& run_dir);

// Runs f(), which reads or writes `file` through torch; a torch error (c10::Error, or
// another std::exception such as the std::out_of_range of LibTorch's unpickler on a
// malformed archive) becomes an m3ret::Error "FILE: cannot WHAT: reason".
void checkpoint_io(const std::filesystem::path& file, const char* what,
                   const std::function<void()>& f);

// Empty when `dir` is a valid checkpoint, else the reason it is not.
std::string verify_checkpoint(const std::filesystem::path& dir);

// The newest valid checkpoint of a run: the one `latest` names if valid, else
// the highest valid step-*; invalid ones are skipped with a warning. nullopt
// when there is none.
std::optional<std::filesystem::path> find_latest_valid(const std::filesystem::path& run_dir);

// `path` is a checkpoint folder (has manifest.json) or a run folder (its latest
// valid checkpoint). Throws m3ret::Error naming the path if neither.
std::filesystem::path resolve_checkpoint(const std::filesystem::path& path);

// Where a module's parameters are (the CPU for a module without any).
torch::Device device_of(const torch::nn::Module& m);

// Reads the state (step, sampler position, config) of a checkpoint folder,
// checking it first: step and sampler_position are integers in
// [0, kMaxCheckpointStep] and the manifest records the same step (an error names the file and the key); and,
// when given, the weights into `model`, the optimizer state and the RNG
// state (restore_rng). Throws m3ret::Error naming the file on any problem.
CheckpointState load_checkpoint(const std::filesystem::path& dir, torch::nn::Module* model,
                                torch::optim::Optimizer* optimizer, bool restore_rng);

}  // namespace m3ret::trainer
