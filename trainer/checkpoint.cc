#include "trainer/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/fs.h"

namespace m3ret::trainer {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

const std::vector<std::string> kPayload = {"model.pt", "optimizer.pt", "rng.pt", "state.json",
                                           "config.toml"};

// step-* folders of run_dir/checkpoints, newest first.
std::vector<stdfs::path> step_dirs(const stdfs::path& ckdir) {
  std::vector<stdfs::path> out;
  if (!stdfs::is_directory(ckdir)) return out;
  for (auto& e : stdfs::directory_iterator(ckdir)) {
    auto name = e.path().filename().string();
    if (e.is_directory() && name.rfind("step-", 0) == 0) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.filename() > b.filename(); });
  return out;
}

template <class F>
void wrap(const stdfs::path& file, const char* what, F&& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    throw Error(fmt::format("{}: cannot {}: {}", file.string(), what, e.what_without_backtrace()));
  }
}

}  // namespace

std::string checkpoint_name(int64_t step) { return fmt::format("step-{:09d}", step); }

stdfs::path save_checkpoint(const stdfs::path& run_dir, const CheckpointState& state,
                            torch::nn::Module& model, torch::optim::Optimizer* optimizer,
                            int64_t keep_last) {
  const stdfs::path ckdir = run_dir / "checkpoints";
  const stdfs::path final_dir = ckdir / checkpoint_name(state.step);
  const stdfs::path tmp = ckdir / fmt::format(".tmp-{}-{}", checkpoint_name(state.step), getpid());
  stdfs::create_directories(ckdir);
  stdfs::remove_all(tmp);
  stdfs::create_directories(tmp);
  try {
    wrap(tmp / "model.pt", "write the model", [&] {
      torch::serialize::OutputArchive archive;
      model.save(archive);
      archive.save_to((tmp / "model.pt").string());
    });
    if (optimizer)
      wrap(tmp / "optimizer.pt", "write the optimizer",
           [&] { torch::save(*optimizer, (tmp / "optimizer.pt").string()); });
    wrap(tmp / "rng.pt", "write the RNG state", [&] {
      auto gen = at::detail::getDefaultCPUGenerator();
      torch::Tensor rng;
      {
        std::lock_guard<std::mutex> lock(gen.mutex());
        rng = gen.get_state();
      }
      torch::save(rng, (tmp / "rng.pt").string());
    });
    json st = {{"format", kCheckpointFormat}, {"version", kCheckpointVersion},
               {"step", state.step}, {"sampler_position", state.sampler_position}};
    fs::write_atomic(tmp / "state.json", st.dump(2) + "\n");
    fs::write_atomic(tmp / "config.toml", state.config_toml);
    json files = json::object();
    for (const auto& f : kPayload)
      if (stdfs::exists(tmp / f)) files[f] = fs::checksum_file(tmp / f);
    json manifest = {{"format", kCheckpointFormat}, {"version", kCheckpointVersion},
                     {"step", state.step}, {"files", files}};
    fs::write_atomic(tmp / "manifest.json", manifest.dump(2) + "\n");
    if (stdfs::exists(final_dir)) stdfs::remove_all(final_dir);
    stdfs::rename(tmp, final_dir);
  } catch (...) {
    std::error_code ec;
    stdfs::remove_all(tmp, ec);
    throw;
  }
  fs::write_atomic(ckdir / "latest", checkpoint_name(state.step) + "\n");
  if (keep_last > 0) {
    auto dirs = step_dirs(ckdir);
    for (size_t i = static_cast<size_t>(keep_last); i < dirs.size(); ++i)
      if (dirs[i] != final_dir) stdfs::remove_all(dirs[i]);
  }
  return final_dir;
}

std::string verify_checkpoint(const stdfs::path& dir) {
  json manifest;
  try {
    manifest = json::parse(fs::read_file(dir / "manifest.json"));
  } catch (const std::exception& e) {
    return fmt::format("unreadable manifest.json ({})", e.what());
  }
  if (manifest.value("format", "") != kCheckpointFormat)
    return "manifest.json is not an m3ret checkpoint manifest";
  if (manifest.value("version", 0) != kCheckpointVersion)
    return fmt::format("unsupported checkpoint version {}", manifest.value("version", 0));
  if (!manifest.contains("files") || !manifest["files"].contains("model.pt"))
    return "manifest.json lists no model.pt";
  for (auto& [name, sum] : manifest["files"].items()) {
    const auto file = dir / name;
    if (!stdfs::exists(file)) return name + " is missing";
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
  for (auto& d : step_dirs(ckdir)) candidates.push_back(d);
  for (auto& c : candidates) {
    if (!stdfs::is_directory(c)) {
      spdlog::warn("checkpoint {} named by 'latest' does not exist; looking for others", c.string());
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
  throw Error(fmt::format("{}: neither a checkpoint folder nor a run folder with a valid checkpoint",
                          path.string()));
}

CheckpointState load_checkpoint(const stdfs::path& dir, torch::nn::Module* model,
                                torch::optim::Optimizer* optimizer, bool restore_rng) {
  CheckpointState state;
  const auto state_file = dir / "state.json";
  json st;
  try {
    st = json::parse(fs::read_file(state_file));
    if (st.at("format").get<std::string>() != kCheckpointFormat ||
        st.at("version").get<int>() != kCheckpointVersion)
      throw Error("not an m3ret checkpoint of version 1");
    state.step = st.at("step").get<int64_t>();
    state.sampler_position = st.at("sampler_position").get<int64_t>();
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: {}", state_file.string(), e.what()));
  }
  state.config_toml = fs::read_file(dir / "config.toml");
  if (model)
    wrap(dir / "model.pt", "read the model", [&] {
      torch::serialize::InputArchive archive;
      archive.load_from((dir / "model.pt").string());
      model->load(archive);
    });
  if (optimizer) {
    if (!stdfs::exists(dir / "optimizer.pt"))
      throw Error(fmt::format("{}: no optimizer.pt to resume from", dir.string()));
    wrap(dir / "optimizer.pt", "read the optimizer",
         [&] { torch::load(*optimizer, (dir / "optimizer.pt").string()); });
  }
  if (restore_rng)
    wrap(dir / "rng.pt", "read the RNG state", [&] {
      torch::Tensor rng;
      torch::load(rng, (dir / "rng.pt").string());
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(rng);
    });
  return state;
}

}  // namespace m3ret::trainer
