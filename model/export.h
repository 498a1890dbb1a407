// Weights for Python users: safetensors files with timm-like tensor names.
//
// Format (https://github.com/huggingface/safetensors): 8-byte little-endian
// header length n, n bytes of JSON header {name: {"dtype", "shape",
// "data_offsets": [begin, end]}, "__metadata__": {string: string}} padded with
// spaces to a multiple of 8, then the raw little-endian tensor bytes.
//
// Encoder names (docs/model.md): patch_embed.proj.{weight,bias} (Conv3d
// [D, 3, t, ph, pw]; with the hMLP stem patch_embed.proj.{0,3,6}.* convolutions
// and .{1,4,7}.* LayerNorms, as DeiT III names them), cls_token [1, 1, D],
// blocks.{i}.norm1.*, blocks.{i}.attn.qkv.*, blocks.{i}.attn.proj.*,
// blocks.{i}.norm2.*, blocks.{i}.mlp.fc1.*,
// blocks.{i}.mlp.fc2.*, blocks.{i}.ls1.gamma / ls2.gamma (LayerScale only),
// norm.*. No pos_embed: it is the fixed sin-cos table of model.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace m3ret::trainer {

class Encoder;

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Writes `tensors` (float32/float64/int64/uint8/bool..., any shape, any
// device) atomically to `out`; metadata values are strings. Throws m3ret::Error
// naming the file or the tensor (duplicate name, unsupported dtype).
void write_safetensors(const std::filesystem::path& out, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Reads a safetensors file written by write_safetensors (or by Python's
// safetensors) into CPU tensors, in header order of data offsets. Throws
// m3ret::Error naming the file and what is wrong (truncated, bad header,
// offsets out of range).
NamedTensors read_safetensors(const std::filesystem::path& file,
                              std::map<std::string, std::string>* metadata = nullptr);

// The encoder's parameters under the timm-like names above (detached CPU
// float32 tensors, in module order).
NamedTensors encoder_tensors(Encoder& encoder);

struct ExportResult {
  std::filesystem::path checkpoint;  // the checkpoint folder that was read
  int64_t step = 0;
  int64_t tensors = 0;
  int64_t parameters = 0;  // elements written
  std::string weights;     // "student" or "teacher": the encoder that was written
};

// `m3ret export`: reads the checkpoint (a checkpoint folder, or a run folder:
// its latest valid checkpoint) and writes the encoder; with `heads`, also the
// objective's trained parts (MAE decoder, SimDINO heads and teacher) under
// "objective." + their module names. `weights` chooses the encoder written
// (trainer::EncoderChoice: "student", "teacher" or "auto" = what `m3ret embed`
// uses by default). The metadata holds format "m3ret-encoder", the model spec
// (width, depth, heads, tubelet, mlp_ratio, layerscale, embedding), weights,
// the step, the config (TOML), and what rebuilding the encoder needs besides
// the tensors: pos_embed (JSON: the sin-cos layout), input (JSON: scaling,
// channels, frames, crop, mean, std), stem_type (linear or hmlp), stem,
// mlp_hidden, layernorm_eps, activation, qkv_bias. python/m3ret_encoder.py reads all of it.
ExportResult export_checkpoint(const std::filesystem::path& checkpoint,
                               const std::filesystem::path& out, bool heads,
                               const std::string& weights = "student");

}  // namespace m3ret::trainer
