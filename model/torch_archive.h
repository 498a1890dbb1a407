// Checks a LibTorch archive (model.pt, optimizer.pt, rng.pt of a checkpoint)
// before LibTorch opens it.
//
// LibTorch trusts the sizes an archive declares: a mutated file makes it
// allocate what a zip entry or a pickled string claims (tens of GB from a
// 50 KB file) and a tensor may come back in any shape. check_torch_archive()
// walks the zip directory with libzip and every pickle record's opcodes, and
// load_module() compares each parameter and buffer with what the model expects.
#pragma once

#include <filesystem>

#include <torch/torch.h>

namespace m3ret::trainer {

// Throws m3ret::Error "FILE: not a valid LibTorch archive: WHY" unless `file` is a
// zip archive whose entries are stored uncompressed within the file and whose
// pickle records (*.pkl) are well-formed opcode streams: every length and memo
// index they declare fits in the record, and they end with STOP.
void check_torch_archive(const std::filesystem::path& file);

// check_torch_archive(file), then reads the archive onto `device`: first in a forked child
// (data/isolate.h; LibTorch's TorchScript importer crashes on some mutated sources), whose
// crash or running out of time (30 s plus 1 s per 16 MB) or memory (4096 MB plus 4 times the
// file) is an m3ret::Error naming the file; then here.
void load_torch_archive(torch::serialize::InputArchive& archive, const std::filesystem::path& file,
                        c10::optional<torch::Device> device = c10::nullopt);

// module->load(archive), refusing (m3ret::Error naming `file` and the tensor) any
// parameter or buffer whose shape or dtype differs from the module's own.
void load_module(torch::nn::Module& module, torch::serialize::InputArchive& archive,
                 const std::filesystem::path& file);

}  // namespace m3ret::trainer
