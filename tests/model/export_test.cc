// safetensors export (model/export.h): the format round-trips, names follow
// timm, a checkpoint's encoder is what gets written, Python reads it, bad
// files are refused with the file named.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/error.h"
#include "core/fs.h"
#include "test_util.h"
#include "model/export.h"
#include "model/objective.h"
#include "model/settings.h"
#include "trainer/checkpoint.h"

namespace m3ret::trainer {
namespace {

const char* kToml = R"([model]
preset = "tiny"
width = 32
depth = 2
heads = 2
tubelet = [2, 8, 8]
layerscale = 0.1
[train]
objective = "mae+simdino"
seed = 3
[mae]
decoder_width = 16
decoder_depth = 1
decoder_heads = 2
[simdino]
head_hidden = 32
head_out = 16
)";

Settings tiny_settings() {
  config::Document doc;
  doc.add_text(kToml, "test.toml");
  Settings s;
  doc.bind("", s);
  return s;
}

TEST(Export, SafetensorsRoundTripsDtypesShapesAndMetadata) {
  testing::TempDir dir("export_roundtrip");
  NamedTensors in = {{"a.weight", torch::randn({3, 4})},
                     {"b", torch::arange(5, torch::kInt64)},
                     {"c", torch::rand({2, 1, 3}, torch::kFloat64)},
                     {"scalar", torch::tensor(2.5f)},
                     {"empty", torch::zeros({0, 3})}};
  write_safetensors(dir / "x.safetensors", in, {{"format", "test"}});
  const auto raw = fs::read_file(dir / "x.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(raw[i]);
  EXPECT_EQ(n % 8, 0u);  // header padded to 8 bytes
  auto header = nlohmann::json::parse(raw.substr(8, n));
  EXPECT_EQ(header["a.weight"]["dtype"], "F32");
  EXPECT_EQ(header["b"]["dtype"], "I64");
  EXPECT_EQ(header["c"]["shape"], nlohmann::json({2, 1, 3}));
  EXPECT_EQ(header["__metadata__"]["format"], "test");
  std::map<std::string, std::string> meta;
  auto out = read_safetensors(dir / "x.safetensors", &meta);
  ASSERT_EQ(out.size(), in.size());
  EXPECT_EQ(meta.at("format"), "test");
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(out[i].first, in[i].first);
    EXPECT_EQ(out[i].second.scalar_type(), in[i].second.scalar_type());
    EXPECT_TRUE(torch::equal(out[i].second, in[i].second)) << in[i].first;
  }
}

TEST(Export, BadInputIsRefusedNamingTheFileAndNothingPartialIsLeft) {
  testing::TempDir dir("export_bad");
  const auto f = dir / "x.safetensors";
  EXPECT_THROW(write_safetensors(f, {{"a", torch::ones({1})}, {"a", torch::ones({1})}}), Error);
  EXPECT_THROW(write_safetensors(f, {{"z", torch::ones({1}, torch::kComplexFloat)}}), Error);
  EXPECT_FALSE(std::filesystem::exists(f));
  write_safetensors(f, {{"a", torch::ones({16})}});
  const auto good = fs::read_file(f);
  auto expect_refused = [&](const std::string& content, const std::string& why) {
    fs::write_atomic(f, content);
    try {
      read_safetensors(f);
      ADD_FAILURE() << "accepted: " << why;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(f.string()), std::string::npos) << e.what();
    }
  };
  expect_refused(good.substr(0, good.size() - 4), "truncated data");
  expect_refused(good.substr(0, 5), "truncated length");
  std::string bad_json = good;
  bad_json[9] = '!';
  expect_refused(bad_json, "bad JSON");
  std::string huge = good;
  huge[7] = '\x7f';
  expect_refused(huge, "header length beyond the file");
  // Crafted headers: refused naming the file, before anything is allocated.
  auto with_header = [](const std::string& header, size_t data_bytes) {
    std::string out(8, '\0');
    for (size_t i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    return out + header + std::string(data_bytes, '\0');
  };
  expect_refused(with_header(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
                 "negative dimension");
  expect_refused(with_header(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],)"
                             R"("data_offsets":[0,4]}})",
                             4),
                 "a shape whose size overflows");
  fs::write_atomic(f, with_header(R"({"__metadata__":{"k":1}})", 0));
  std::map<std::string, std::string> meta;
  EXPECT_THROW(read_safetensors(f, &meta), Error) << "a metadata value that is not a string";
  EXPECT_THROW(read_safetensors(dir / "missing.safetensors"), Error);
}

TEST(Export, EncoderTensorsUseTimmNames) {
  auto s = tiny_settings();
  Encoder enc(s.model.spec());
  auto t = encoder_tensors(enc);
  std::map<std::string, torch::Tensor> by;
  for (auto& [n, v] : t) by[n] = v;
  EXPECT_EQ(t.size(), enc.parameters().size());
  for (const char* name :
       {"patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "blocks.0.norm1.weight",
        "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight",
        "blocks.0.norm2.bias", "blocks.1.mlp.fc1.weight", "blocks.1.mlp.fc2.bias",
        "blocks.1.ls1.gamma", "blocks.1.ls2.gamma", "norm.weight", "norm.bias"})
    EXPECT_TRUE(by.count(name)) << name;
  EXPECT_EQ(by["patch_embed.proj.weight"].sizes(), (std::vector<int64_t>{32, 3, 2, 8, 8}));
  EXPECT_EQ(by["blocks.0.attn.qkv.weight"].sizes(), (std::vector<int64_t>{96, 32}));
  EXPECT_EQ(by["cls_token"].sizes(), (std::vector<int64_t>{1, 1, 32}));
}

// The hMLP stem under DeiT III's names (its nn.Sequential indexes: convolutions
// 0, 3, 6 and norms 1, 4, 7), and the export's metadata says which stem it is.
TEST(Export, HmlpStemTensorsUseDeitNamesAndTheMetadataNamesTheStem) {
  auto s = tiny_settings();
  s.model.stem = "hmlp";
  Encoder enc(s.model.spec());
  std::map<std::string, std::vector<int64_t>> shape;
  for (auto& [n, v] : encoder_tensors(enc)) shape[n] = v.sizes().vec();
  EXPECT_EQ(shape.count("patch_embed.proj.weight"), 0u);
  EXPECT_EQ(shape["patch_embed.proj.0.weight"], (std::vector<int64_t>{8, 3, 2, 2, 2}));
  EXPECT_EQ(shape["patch_embed.proj.1.weight"], (std::vector<int64_t>{8}));
  EXPECT_EQ(shape["patch_embed.proj.3.weight"], (std::vector<int64_t>{8, 8, 1, 2, 2}));
  EXPECT_EQ(shape["patch_embed.proj.4.bias"], (std::vector<int64_t>{8}));
  EXPECT_EQ(shape["patch_embed.proj.6.weight"], (std::vector<int64_t>{32, 8, 1, 2, 2}));
  EXPECT_EQ(shape["patch_embed.proj.7.bias"], (std::vector<int64_t>{32}));

  testing::TempDir dir("export_hmlp");
  torch::manual_seed(5);
  Model model(s, nullptr);
  CheckpointState state;
  state.step = 3;
  state.config_toml = kToml;
  state.config_toml.insert(state.config_toml.find("layerscale"), "stem = \"hmlp\"\n");
  save_checkpoint(dir / "run", state, model, nullptr, 0);
  std::map<std::string, std::string> meta;
  export_checkpoint(dir / "run", dir / "e.safetensors", false);
  auto t = read_safetensors(dir / "e.safetensors", &meta);
  EXPECT_EQ(meta.at("stem_type"), "hmlp");
  EXPECT_NE(meta.at("stem").find(".6 conv3d [1, 2, 2], 8 -> 32"), std::string::npos)
      << meta.at("stem");
  EXPECT_EQ(t.size(), encoder_tensors(*model.encoder).size());
}

TEST(Export, CheckpointEncoderIsWrittenAndPythonReadsIt) {
  testing::TempDir dir("export_checkpoint");
  auto s = tiny_settings();
  torch::manual_seed(5);
  Model model(s, nullptr);
  {
    torch::NoGradGuard g;  // "trained" weights differ from any fresh init
    for (auto& p : model.parameters()) p.add_(0.5);
  }
  CheckpointState state;
  state.step = 17;
  state.config_toml = kToml;
  save_checkpoint(dir / "run", state, model, nullptr, 0);

  const auto out = dir / "encoder.safetensors";
  auto r = export_checkpoint(dir / "run", out, /*heads=*/false);  // a run folder: its latest
  EXPECT_EQ(r.step, 17);
  std::map<std::string, std::string> meta;
  auto t = read_safetensors(out, &meta);
  EXPECT_EQ(meta.at("format"), "m3ret-encoder");
  EXPECT_EQ(meta.at("width"), "32");
  EXPECT_EQ(meta.at("tubelet"), "[2, 8, 8]");
  EXPECT_EQ(meta.at("step"), "17");
  auto expected = encoder_tensors(*model.encoder);
  ASSERT_EQ(t.size(), expected.size());
  for (size_t i = 0; i < t.size(); ++i) {
    EXPECT_EQ(t[i].first, expected[i].first);
    EXPECT_TRUE(torch::equal(t[i].second, expected[i].second)) << t[i].first;
  }
  EXPECT_EQ(r.parameters, parameter_count(*model.encoder));

  // With heads: the objective's parts too (decoder, SimDINO head and teacher).
  auto rh = export_checkpoint(r.checkpoint, dir / "all.safetensors", /*heads=*/true);
  EXPECT_EQ(rh.parameters, parameter_count(model));
  std::set<std::string> names;
  for (auto& [n, v] : read_safetensors(dir / "all.safetensors")) names.insert(n);
  EXPECT_TRUE(names.count("objective.mae.decoder.mask_token"));
  EXPECT_TRUE(names.count("objective.simdino.head.fc3.weight"));

  // Python (numpy + json, not our reader) sees the same names, shapes and values.
  const auto py = m3ret::testing::python_with("numpy");
  if (py.empty()) GTEST_SKIP() << "no python3 with numpy";
  const auto script = dir / "read.py";
  std::ofstream(script) << R"(import json, struct, sys
import numpy as np
data = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', data[:8])[0]
h = json.loads(data[8:8 + n])
meta = h.pop('__metadata__')
out = {}
for k, v in h.items():
    a, b = v['data_offsets']
    x = np.frombuffer(data[8 + n + a:8 + n + b], dtype=np.float32).reshape(v['shape'])
    out[k] = [float(x.astype(np.float64).sum()), list(x.shape)]
print(json.dumps({'meta': meta, 'tensors': out}))
)";
  std::string log;
  ASSERT_EQ(testing::run_command(py + " " + script.string() + " " + out.string(), &log), 0) << log;
  auto j = nlohmann::json::parse(log.substr(log.find('{')));
  EXPECT_EQ(j["meta"]["depth"], "2");
  for (auto& [n, v] : expected) {
    ASSERT_TRUE(j["tensors"].contains(n)) << n;
    EXPECT_EQ(j["tensors"][n][1].get<std::vector<int64_t>>(), v.sizes().vec()) << n;
    EXPECT_NEAR(j["tensors"][n][0].get<double>(), v.to(torch::kFloat64).sum().item<double>(), 1e-6)
        << n;
  }
}

TEST(Export, MissingCheckpointIsRefusedNamingThePath) {
  testing::TempDir dir("export_missing");
  try {
    export_checkpoint(dir / "nothing", dir / "e.safetensors", false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nothing"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "e.safetensors"));
}

}  // namespace
}  // namespace m3ret::trainer
