#include "model/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/fs.h"
#include "model/torch_archive.h"

namespace m3ret::trainer {

namespace stdfs = std::filesystem;
using nlohmann::json;

torch::Device device_of(const torch::nn::Module& m) {
  const auto params = m.parameters();
  return params.empty() ? torch::Device(torch::kCPU) : params.front().device();
}

std::string checkpoint_name(int64_t step) { return fmt::format("step-{:09d}", step); }

std::vector<stdfs::path> checkpoint_folders(const stdfs::path& run_dir) {
  const stdfs::path ckdir = run_dir / "checkpoints";
  std::vector<stdfs::path> out;
  if (!stdfs::is_directory(ckdir)) return out;
  for (auto& e : stdfs::directory_iterator(ckdir)) {
    auto name = e.path().filename().string();
    if (e.is_directory() && name.rfind("step-", 0) == 0) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.filename() > b.filename(); });
  return out;
}

void checkpoint_io(const stdfs::path& file, const char* what, const std::function<void()>& f) {
  try {
    f();
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Error(fmt::format("{}: cannot {}: {}", file.string(), what, e.what_without_backtrace()));
  } catch (const std::exception& e) {  // e.g. std::out_of_range from a malformed pickle
    throw Error(fmt::format("{}: cannot {}: {}", file.string(), what, e.what()));
  }
}

std::string verify_checkpoint(const stdfs::path& dir) {
  json manifest;
  try {
    manifest = json::parse(fs::read_file(dir / "manifest.json"));
  } catch (const std::exception& e) {
    return fmt::format("unreadable manifest.json ({})", e.what());
  }
  // Any JSON is checked for its types before a value is read (a wrong type is a reason, not a
  // json::type_error).
  if (!manifest.is_object() || !manifest.contains("format") || !manifest["format"].is_string() ||
      manifest["format"] != kCheckpointFormat)
    return "manifest.json is not an m3ret checkpoint manifest";
  if (!manifest.contains("version") || manifest["version"] != kCheckpointVersion)
    return fmt::format("unsupported checkpoint version {}",
                       manifest.value("version", json()).dump());
  if (!manifest.contains("files") || !manifest["files"].is_object() ||
      !manifest["files"].contains("model.pt"))
    return "manifest.json lists no model.pt";
  for (auto& [name, sum] : manifest["files"].items()) {
    // Only files of the folder itself (a writer lists plain names).
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
      return fmt::format("manifest.json lists '{}', not a file of the checkpoint folder", name);
    if (!sum.is_string())
      return fmt::format("manifest.json: the checksum of {} is not a string", name);
    const auto file = dir / name;
    std::error_code ec;  // e.g. a name beyond NAME_MAX
    if (!stdfs::is_regular_file(file, ec)) return name + " is missing";
    if (fs::checksum_file(file) != sum.get<std::string>()) return name + " fails its checksum";
  }
  return "";
}

std::optional<stdfs::path> find_latest_valid(const stdfs::path& run_dir) {
  const stdfs::path ckdir = run_dir / "checkpoints";
  std::vector<stdfs::path> candidates;
  if (stdfs::exists(ckdir / "latest")) {
    std::string name = fs::read_file(ckdir / "latest");
    while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
    if (!name.empty()) candidates.push_back(ckdir / name);
  }
  for (auto& d : checkpoint_folders(run_dir)) candidates.push_back(d);
  for (auto& c : candidates) {
    if (!stdfs::is_directory(c)) {
      spdlog::warn("checkpoint {} named by 'latest' does not exist; looking for others",
                   c.string());
      continue;
    }
    auto why = verify_checkpoint(c);
    if (why.empty()) return c;
    spdlog::warn("skipping invalid checkpoint {}: {}", c.string(), why);
  }
  return std::nullopt;
}

stdfs::path resolve_checkpoint(const stdfs::path& path) {
  if (stdfs::exists(path / "manifest.json")) {
    auto why = verify_checkpoint(path);
    if (!why.empty()) throw Error(fmt::format("{}: invalid checkpoint: {}", path.string(), why));
    return path;
  }
  if (auto found = find_latest_valid(path)) return *found;
  throw Error(fmt::format(
      "{}: neither a checkpoint folder nor a run folder with a valid checkpoint", path.string()));
}

namespace {

// A non-negative integer `key` of a checkpoint's JSON file, below kMaxCheckpointStep.
int64_t step_count(const json& j, const char* key, const stdfs::path& file) {
  if (!j.contains(key) || !j[key].is_number_integer())
    throw Error(fmt::format("{}: '{}' is missing or not an integer", file.string(), key));
  const auto v = j[key].get<int64_t>();
  if (v < 0 || v > kMaxCheckpointStep)
    throw Error(fmt::format("{}: '{}' = {} is out of range (0 to {})", file.string(), key, v,
                            kMaxCheckpointStep));
  return v;
}

}  // namespace

CheckpointState load_checkpoint(const stdfs::path& dir, torch::nn::Module* model,
                                torch::optim::Optimizer* optimizer, bool restore_rng) {
  CheckpointState state;
  const auto state_file = dir / "state.json";
  json st;
  try {
    st = json::parse(fs::read_file(state_file));
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: {}", state_file.string(), e.what()));
  }
  if (!st.is_object() || !st.contains("format") || st["format"] != kCheckpointFormat ||
      !st.contains("version") || st["version"] != kCheckpointVersion)
    throw Error(fmt::format("{}: not an m3ret checkpoint of version {}", state_file.string(),
                            kCheckpointVersion));
  state.step = step_count(st, "step", state_file);
  state.sampler_position = step_count(st, "sampler_position", state_file);
  if (stdfs::exists(dir / "manifest.json")) {
    const auto manifest_file = dir / "manifest.json";
    const json manifest = json::parse(fs::read_file(manifest_file), nullptr, false);
    if (manifest.is_discarded() || !manifest.is_object() ||
        step_count(manifest, "step", manifest_file) != state.step)
      throw Error(fmt::format("{}: 'step' does not match {} (step {})", manifest_file.string(),
                              state_file.string(), state.step));
  }
  state.config_toml = fs::read_file(dir / "config.toml");
  if (model)
    checkpoint_io(dir / "model.pt", "read the model", [&] {
      // Read onto the model's device (a checkpoint is the same on any device).
      torch::serialize::InputArchive archive;
      load_torch_archive(archive, dir / "model.pt", device_of(*model));
      load_module(*model, archive, dir / "model.pt");
    });
  if (optimizer) {
    if (!stdfs::exists(dir / "optimizer.pt"))
      throw Error(fmt::format("{}: no optimizer.pt to resume from", dir.string()));
    checkpoint_io(dir / "optimizer.pt", "read the optimizer", [&] {
      // The optimizer state onto its parameters' device.
      const auto& groups = optimizer->param_groups();
      const torch::Device device = groups.empty() || groups.front().params().empty()
                                       ? torch::Device(torch::kCPU)
                                       : groups.front().params().front().device();
      check_torch_archive(dir / "optimizer.pt");
      torch::load(*optimizer, (dir / "optimizer.pt").string(), device);
    });
  }
  if (restore_rng)
    checkpoint_io(dir / "rng.pt", "read the RNG state", [&] {
      torch::Tensor rng;
      check_torch_archive(dir / "rng.pt");
      torch::load(rng, (dir / "rng.pt").string());
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(rng);
    });
  // The CUDA generator's state (dropout, drop path) when both the writer and the reader train on
  // a GPU; a GPU checkpoint resumed on the CPU, or a CPU one on a GPU, keeps its seeded stream.
  if (restore_rng && model && device_of(*model).is_cuda() && stdfs::exists(dir / "rng_cuda.pt"))
    checkpoint_io(dir / "rng_cuda.pt", "read the CUDA RNG state", [&] {
      torch::Tensor rng;
      check_torch_archive(dir / "rng_cuda.pt");
      torch::load(rng, (dir / "rng_cuda.pt").string());
      auto gen = at::globalContext().defaultGenerator(device_of(*model));
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(rng);
    });
  return state;
}

}  // namespace m3ret::trainer
