// Checkpoint folders as `m3ret embed`, `search` and `export` read them (model/checkpoint.h,
// model/encoder_api.h: load_encoder = resolve_checkpoint, the encoder from model.pt, then
// load_checkpoint): the bytes a user can hand us. The input is the folder's files state.json,
// manifest.json, model.pt and rng.pt, in this order, separated by kSeparator lines; config.toml
// is fixed (a tiny encoder: TOML is fuzz_config's), so that a mutated model.pt cannot ask for a
// huge model. For an input of odd size the manifest's checksums are first set to the files' own
// (when it names them as strings), so that mutated JSON and torch archives get past the checksum
// check; for an even size the manifest is read as it is. Seeds: checkpoints written by
// save_checkpoint (M3RET_FUZZ_WRITE_SEEDS, fuzz_util.h), MAE+SimDINO and MAE.
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/fs.h"
#include "fuzz_util.h"
#include "model/encoder_api.h"
#include "model/objective.h"
#include "model/settings.h"
#include "trainer/checkpoint.h"

namespace {

constexpr const char* kSeparator = "\n--m3ret-checkpoint-file--\n";
const char* const kFiles[] = {"state.json", "manifest.json", "model.pt", "rng.pt"};

std::string config_toml(const std::string& objective) {
  return "[model]\npreset = \"tiny\"\nwidth = 12\ndepth = 1\nheads = 2\ntubelet = [1, 4, 4]\n"
         "[train]\nobjective = \"" +
         objective +
         "\"\n[mae]\ndecoder_width = 8\ndecoder_depth = 1\ndecoder_heads = 1\n"
         "[simdino]\nhead_hidden = 16\nhead_out = 8\n";
}

void write_seed(const std::filesystem::path& dir, const std::string& objective) {
  const auto run = m3ret::fuzz::scratch_dir() / ("seed-" + objective);
  m3ret::config::Document doc;
  doc.add_text(config_toml(objective), "seed config");
  m3ret::trainer::Settings settings;
  doc.bind("", settings);
  m3ret::trainer::Model model(settings, nullptr);
  // The checkpoints record the fixed config.toml that the harness writes beside them.
  const auto ckpt =
      m3ret::trainer::save_checkpoint(run, {6, 48, config_toml("mae+simdino")}, model, nullptr, 0);
  std::string seed;
  for (const char* name : kFiles)
    seed += (seed.empty() ? "" : kSeparator) + m3ret::fs::read_file(ckpt / name);
  std::ofstream(dir / (objective + ".ckpt"), std::ios::binary) << seed;
}

// Sets the manifest's checksums to those of the files it names (odd-size inputs).
void fix_checksums(const std::filesystem::path& dir) {
  if (!std::filesystem::is_regular_file(dir / "manifest.json")) return;
  auto manifest =
      nlohmann::json::parse(m3ret::fs::read_file(dir / "manifest.json"), nullptr, false, true);
  if (!manifest.is_object() || !manifest.contains("files") || !manifest["files"].is_object())
    return;
  for (auto& [name, sum] : manifest["files"].items()) {
    std::error_code ec;
    if (sum.is_string() && name.find('/') == std::string::npos &&
        std::filesystem::is_regular_file(dir / name, ec))
      sum = m3ret::fs::checksum_file(dir / name);
  }
  std::ofstream(dir / "manifest.json", std::ios::trunc) << manifest.dump();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // LibTorch's TorchScript importer crashes on some sources, in the reading child (fuzz_util.h).
  m3ret::fuzz::forked_children_die_quietly();
  m3ret::fuzz::write_seeds_if_asked([](const std::filesystem::path& dir) {
    write_seed(dir, "mae+simdino");
    write_seed(dir, "mae");
  });
  const std::string config = config_toml("mae+simdino");
  m3ret::fuzz::write_input("ckpt/config.toml", reinterpret_cast<const uint8_t*>(config.data()),
                           config.size());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto dir = m3ret::fuzz::scratch_dir() / "ckpt";
  const std::string input(reinterpret_cast<const char*>(data), size);
  size_t begin = 0;
  for (const char* name : kFiles) {
    std::error_code ec;
    std::filesystem::remove(dir / name, ec);
    if (begin == std::string::npos) continue;  // fewer parts: the rest are missing
    const size_t end = input.find(kSeparator, begin);
    const std::string part = input.substr(begin, end == std::string::npos ? end : end - begin);
    m3ret::fuzz::write_input(std::string("ckpt/") + name,
                             reinterpret_cast<const uint8_t*>(part.data()), part.size());
    begin = end == std::string::npos ? end : end + std::string(kSeparator).size();
  }
  if (size % 2) fix_checksums(dir);
  m3ret::fuzz::refuse_only_with_error([&] {
    m3ret::trainer::EncoderChoice choice;
    (void)m3ret::trainer::load_encoder(dir, choice);
  });
  return 0;
}
