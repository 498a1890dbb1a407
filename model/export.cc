#include "model/export.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "model/checkpoint.h"
#include "model/encoder_api.h"
#include "model/objective.h"
#include "model/settings.h"
#include "model/vit.h"

namespace m3ret::trainer {

namespace {

struct DtypeName {
  torch::ScalarType type;
  const char* name;
};
constexpr DtypeName kDtypes[] = {{torch::kFloat32, "F32"}, {torch::kFloat64, "F64"},
                                 {torch::kFloat16, "F16"}, {torch::kBFloat16, "BF16"},
                                 {torch::kInt64, "I64"},   {torch::kInt32, "I32"},
                                 {torch::kInt16, "I16"},   {torch::kInt8, "I8"},
                                 {torch::kUInt8, "U8"},    {torch::kBool, "BOOL"}};

const char* dtype_name(torch::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  return nullptr;
}

// timm's names for ours (vit.h module names).
std::string timm_name(const std::string& ours) {
  auto replace = [](std::string s, const std::string& from, const std::string& to) {
    auto pos = s.find(from);
    if (pos != std::string::npos) s.replace(pos, from.size(), to);
    return s;
  };
  if (ours.rfind("patch_embed.", 0) == 0) return replace(ours, "patch_embed.", "patch_embed.proj.");
  if (ours.rfind("blocks.", 0) == 0) {
    for (const char* fc : {".fc1.", ".fc2."})
      if (ours.find(fc) != std::string::npos) return replace(ours, fc, std::string(".mlp") + fc);
    for (const char* ls : {".ls1", ".ls2"}) {
      const auto n = std::strlen(ls);
      if (ours.size() > n && ours.compare(ours.size() - n, n, ls) == 0) return ours + ".gamma";
    }
  }
  return ours;
}

}  // namespace

void write_safetensors(const std::filesystem::path& out, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  std::set<std::string> names;
  std::vector<torch::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name.empty() || name == "__metadata__")
      throw Error(fmt::format("{}: invalid tensor name '{}'", out.string(), name));
    if (!names.insert(name).second)
      throw Error(fmt::format("{}: tensor '{}' given twice", out.string(), name));
    const char* dtype = dtype_name(tensor.scalar_type());
    if (!dtype)
      throw Error(fmt::format("{}: tensor '{}' has unsupported dtype {}", out.string(), name,
                              c10::toString(tensor.scalar_type())));
    auto t = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[name] = {
        {"dtype", dtype}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(std::move(t));
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string content;
  content.reserve(8 + json.size() + offset);
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) content.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  content += json;
  for (const auto& t : data)
    content.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  fs::write_atomic(out, content);
}

NamedTensors read_safetensors(const std::filesystem::path& file,
                              std::map<std::string, std::string>* metadata) {
  const std::string content = fs::read_file(file);
  auto fail = [&](const std::string& why) {
    return Error(fmt::format("{}: not a valid safetensors file: {}", file.string(), why));
  };
  if (content.size() < 8) throw fail("shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(content[i]);
  if (n > content.size() - 8) throw fail(fmt::format("header length {} beyond the file", n));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(content.substr(8, n));
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("header is not JSON: ") + e.what());
  }
  if (!header.is_object()) throw fail("header is not a JSON object");
  const uint64_t data_size = content.size() - 8 - n;
  const char* base = content.data() + 8 + n;
  std::vector<std::pair<uint64_t, std::pair<std::string, torch::Tensor>>> found;
  for (auto it = header.begin(); it != header.end(); ++it) {
    try {
      if (it.key() == "__metadata__") {
        if (metadata) *metadata = it.value().get<std::map<std::string, std::string>>();
        continue;
      }
      const auto dtype = it.value().at("dtype").get<std::string>();
      const auto shape = it.value().at("shape").get<std::vector<int64_t>>();
      const auto offs = it.value().at("data_offsets").get<std::vector<uint64_t>>();
      const DtypeName* d = nullptr;
      for (const auto& k : kDtypes)
        if (dtype == k.name) d = &k;
      if (!d) throw fail(fmt::format("tensor '{}': unsupported dtype '{}'", it.key(), dtype));
      if (offs.size() != 2 || offs[0] > offs[1] || offs[1] > data_size)
        throw fail(fmt::format("tensor '{}': data_offsets out of range", it.key()));
      // The shape's size, checked against the tensor's bytes before anything is allocated.
      const uint64_t have = offs[1] - offs[0];
      auto mismatch = [&] {
        return fail(fmt::format("tensor '{}': shape does not match its {} bytes", it.key(), have));
      };
      uint64_t bytes = std::count(shape.begin(), shape.end(), 0) ? 0 : c10::elementSize(d->type);
      for (const int64_t n : shape) {
        if (n < 0) throw fail(fmt::format("tensor '{}': negative dimension {}", it.key(), n));
        if (bytes > 0 && bytes > have / static_cast<uint64_t>(n)) throw mismatch();
        bytes *= static_cast<uint64_t>(n);
      }
      if (bytes != have) throw mismatch();
      auto t = torch::empty(shape, torch::TensorOptions().dtype(d->type));
      if (have > 0) std::memcpy(t.data_ptr(), base + offs[0], have);  // empty: no data_ptr
      found.push_back({offs[0], {it.key(), t}});
    } catch (const nlohmann::json::exception& e) {
      throw fail(fmt::format("tensor '{}': {}", it.key(), e.what()));
    }
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  NamedTensors out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

NamedTensors encoder_tensors(Encoder& encoder) {
  NamedTensors out;
  for (const auto& p : encoder.named_parameters(/*recurse=*/true))
    out.emplace_back(timm_name(p.key()), p.value().detach().to(torch::kCPU, torch::kFloat32));
  return out;
}

namespace {

// What a reader needs to rebuild the encoder besides its tensors: the
// position-embedding layout, the input scaling and the stem (docs/model.md).
std::map<std::string, std::string> rebuild_metadata(const VitSpec& s) {
  const nlohmann::ordered_json pos = {
      {"type", "sincos-3d"},
      {"tokens", "row-major (t, h, w) over the grid (T/t, H/ph, W/pw); CLS has none"},
      {"dims", "[dt | dh | dw], dh = dw = 2*floor(width/6), dt = width - 2*dh"},
      {"axis", "[sin(p*w_i) | cos(p*w_i)], w_i = 10000^(-i/(d/2)), i < d/2, p = 0, 1, ..."}};
  const nlohmann::ordered_json input = {
      {"layout", "[B, C, T, H, W], C = 1 or 3"},
      {"pixels", "uint8 as stored in shards / 255, so x in [0, 1]"},
      {"channels", "C = 1 repeated to 3"},
      {"frames", "T < t: each frame repeated up to t (an image through the 3-D stem)"},
      {"crop", "T, H, W cut to multiples of the tubelet (the end of each axis dropped)"},
      {"scale", "x * 2 - 1"},
      {"mean", {0.5, 0.5, 0.5}},
      {"std", {0.5, 0.5, 0.5}}};
  const std::string stem =
      s.stem == "hmlp"
          ? fmt::format(
                "hmlp (DeiT III): patch_embed.proj.0 conv3d kernel = stride = [{}, {}, {}], "
                "3 -> {}; .1 layernorm over channels; gelu; .3 conv3d [1, 2, 2], {} -> {}; .4 "
                "layernorm; gelu; .6 conv3d [1, 2, 2], {} -> {}; .7 layernorm (eps 1e-6)",
                s.tube_t, s.patch_h / 4, s.patch_w / 4, s.width / 4, s.width / 4, s.width / 4,
                s.width / 4, s.width)
          : fmt::format("conv3d, kernel = stride = [{}, {}, {}], 3 -> {} channels", s.tube_t,
                        s.patch_h, s.patch_w, s.width);
  return {{"pos_embed", pos.dump()},
          {"input", input.dump()},
          {"stem_type", s.stem},
          {"stem", stem},
          {"mlp_hidden", std::to_string(std::llround(s.width * s.mlp_ratio))},
          {"layernorm_eps", "1e-6"},
          {"activation", "gelu (erf)"},
          {"qkv_bias", "true"}};
}

}  // namespace

ExportResult export_checkpoint(const std::filesystem::path& checkpoint,
                               const std::filesystem::path& out, bool heads,
                               const std::string& weights) {
  ExportResult r;
  r.checkpoint = resolve_checkpoint(checkpoint);
  const auto config_file = r.checkpoint / "config.toml";
  config::Document doc;
  doc.add_file(config_file);
  Settings settings;
  doc.bind("model", settings.model);
  doc.bind("train", settings.train);
  doc.bind("mae", settings.mae);
  doc.bind("simdino", settings.simdino);
  Model model(settings, nullptr);
  r.step = load_checkpoint(r.checkpoint, &model, nullptr, false).step;

  EncoderChoice choice;
  choice.weights = weights;
  const LoadedEncoder loaded = load_encoder(r.checkpoint, choice);  // student or EMA teacher
  r.weights = loaded.weights;
  NamedTensors tensors = encoder_tensors(*loaded.encoder);
  if (heads)
    for (const auto& p : model.objective->named_parameters(/*recurse=*/true))
      tensors.emplace_back("objective." + p.key(), p.value().detach().to(torch::kCPU));
  const auto& s = loaded.encoder->spec();
  std::map<std::string, std::string> meta = {
      {"format", "m3ret-encoder"},
      {"width", std::to_string(s.width)},
      {"depth", std::to_string(s.depth)},
      {"heads", std::to_string(s.heads)},
      {"tubelet", fmt::format("[{}, {}, {}]", s.tube_t, s.patch_h, s.patch_w)},
      {"mlp_ratio", fmt::format("{}", s.mlp_ratio)},
      {"layerscale", fmt::format("{}", s.layerscale)},
      {"embedding", s.mean_embedding ? "mean" : "cls"},
      {"weights", loaded.weights},
      {"objective", settings.train.objective},
      {"step", std::to_string(r.step)},
      {"config_toml", fs::read_file(config_file)}};
  meta.merge(rebuild_metadata(s));
  write_safetensors(out, tensors, meta);
  r.tensors = static_cast<int64_t>(tensors.size());
  for (const auto& t : tensors) r.parameters += t.second.numel();
  return r;
}

}  // namespace m3ret::trainer
