// Writing checkpoints (the format and its reading: model/checkpoint.h).
//
// A checkpoint is written into a hidden temporary folder
// (.tmp-step-000001000-HOST-PID) and renamed when complete, so a folder named
// step-* is always whole (a failed write, e.g. a full disk, removes the
// temporary and leaves the previous checkpoints as they were); `checkpoints/latest` (a
// text file written atomically) names the newest. model.pt holds CPU tensors
// whatever device trained the model. Written by one rank (rank 0).
#pragma once

#include <cstdint>
#include <filesystem>

#include <torch/torch.h>

#include "model/checkpoint.h"

namespace m3ret::trainer {

// Writes the checkpoint of `state.step` under run_dir/checkpoints, updates
// `latest`, then deletes the oldest step-* folders beyond keep_last (0 = keep
// all). optimizer may be null. Returns the checkpoint folder. Throws
// m3ret::Error naming the path on failure (no partial step-* folder remains).
std::filesystem::path save_checkpoint(const std::filesystem::path& run_dir,
                                      const CheckpointState& state, torch::nn::Module& model,
                                      torch::optim::Optimizer* optimizer, int64_t keep_last);

// Removes the temporary folders (`checkpoints/.tmp-step-*-HOST-PID`) of
// checkpoint writers that are gone: processes of this host that no longer
// exist, and writers on other hosts (a run folder is trained by one job at a
// time; call this at the start of that job, on the writing rank). Returns how
// many were removed; never throws (a folder it cannot remove is logged).
int remove_stale_temporaries(const std::filesystem::path& run_dir);

}  // namespace m3ret::trainer
