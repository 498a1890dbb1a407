#include "trainer/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/fs.h"

namespace m3ret::trainer {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

const std::vector<std::string> kPayload = {"model.pt",    "optimizer.pt", "rng.pt",
                                           "rng_cuda.pt", "state.json",   "config.toml"};

using Sink = std::function<size_t(const void*, size_t)>;

// Serialises through `f(sink)` into `file`. torch's own file writer is not
// used: LibTorch 1.13's writer throws from its destructor after a failed write
// (std::terminate on a full disk); the sink never fails, FileWriter keeps the
// error and finish() reports it.
template <class F>
void write_archive(const stdfs::path& file, const char* what, F&& f) {
  fs::FileWriter out(file);
  const Sink sink = [&out](const void* data, size_t n) { return out.write(data, n); };
  checkpoint_io(file, what, [&] { f(sink); });
  out.finish();
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  std::string h(buf);
  std::replace(h.begin(), h.end(), '-', '_');
  return h;
}

// ".tmp-step-000000010-HOST-PID": the writer's host and process.
stdfs::path temp_dir(const stdfs::path& ckdir, int64_t step) {
  return ckdir / fmt::format(".tmp-{}-{}-{}", checkpoint_name(step), host_name(), getpid());
}

// True when the writer of a temporary folder is certainly gone: a process of
// this host that no longer exists, or a writer on another host (a run folder
// is trained by one job at a time, and this one is starting).
bool writer_is_dead(const std::string& name) {
  const auto dash = name.rfind('-');
  if (dash == std::string::npos) return true;
  const auto host_dash = name.rfind('-', dash - 1);
  const std::string host =
      host_dash == std::string::npos ? "" : name.substr(host_dash + 1, dash - host_dash - 1);
  if (host != host_name()) return true;
  pid_t pid = 0;
  try {
    pid = static_cast<pid_t>(std::stol(name.substr(dash + 1)));
  } catch (const std::exception&) {
    return true;
  }
  return pid <= 0 || (pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH);
}

// `t` on the CPU (itself when it is there): checkpoints hold CPU tensors
// whatever device trained them.
torch::Tensor on_cpu(const torch::Tensor& t) {
  if (!t.defined() || t.device().is_cpu()) return t;
  return t.detach().to(torch::kCPU).requires_grad_(t.requires_grad());
}

// torch::nn::Module::save with every tensor copied to the CPU first.
void save_on_cpu(const torch::nn::Module& m, torch::serialize::OutputArchive& archive) {
  for (const auto& p : m.named_parameters(/*recurse=*/false))
    archive.write(p.key(), on_cpu(p.value()));
  for (const auto& b : m.named_buffers(/*recurse=*/false))
    archive.write(b.key(), on_cpu(b.value()), /*is_buffer=*/true);
  for (const auto& c : m.named_children()) {
    if (!c.value()->is_serializable()) continue;
    torch::serialize::OutputArchive child(archive.compilation_unit());
    save_on_cpu(*c.value(), child);
    archive.write(c.key(), child);
  }
}

}  // namespace

stdfs::path save_checkpoint(const stdfs::path& run_dir, const CheckpointState& state,
                            torch::nn::Module& model, torch::optim::Optimizer* optimizer,
                            int64_t keep_last) {
  const stdfs::path ckdir = run_dir / "checkpoints";
  const stdfs::path final_dir = ckdir / checkpoint_name(state.step);
  const stdfs::path tmp = temp_dir(ckdir, state.step);
  stdfs::create_directories(ckdir);
  stdfs::remove_all(tmp);
  stdfs::create_directories(tmp);
  try {
    write_archive(tmp / "model.pt", "write the model", [&](const Sink& sink) {
      torch::serialize::OutputArchive archive;
      save_on_cpu(model, archive);
      archive.save_to(sink);
    });
    if (optimizer)
      write_archive(tmp / "optimizer.pt", "write the optimizer",
                    [&](const Sink& sink) { torch::save(*optimizer, sink); });
    write_archive(tmp / "rng.pt", "write the RNG state", [&](const Sink& sink) {
      auto gen = at::detail::getDefaultCPUGenerator();
      torch::Tensor rng;
      {
        std::lock_guard<std::mutex> lock(gen.mutex());
        rng = gen.get_state();
      }
      torch::save(rng, sink);
    });
    if (const torch::Device device = device_of(model); device.is_cuda())
      write_archive(tmp / "rng_cuda.pt", "write the CUDA RNG state", [&](const Sink& sink) {
        auto gen = at::globalContext().defaultGenerator(device);
        torch::Tensor rng;
        {
          std::lock_guard<std::mutex> lock(gen.mutex());
          rng = gen.get_state();
        }
        torch::save(rng, sink);
      });
    json st = {{"format", kCheckpointFormat},
               {"version", kCheckpointVersion},
               {"step", state.step},
               {"sampler_position", state.sampler_position}};
    fs::write_atomic(tmp / "state.json", st.dump(2) + "\n");
    fs::write_atomic(tmp / "config.toml", state.config_toml);
    json files = json::object();
    for (const auto& f : kPayload)
      if (stdfs::exists(tmp / f)) files[f] = fs::checksum_file(tmp / f);
    json manifest = {{"format", kCheckpointFormat},
                     {"version", kCheckpointVersion},
                     {"step", state.step},
                     {"files", files}};
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
    auto dirs = checkpoint_folders(run_dir);
    for (size_t i = static_cast<size_t>(keep_last); i < dirs.size(); ++i)
      if (dirs[i] != final_dir) stdfs::remove_all(dirs[i]);
  }
  return final_dir;
}

int remove_stale_temporaries(const stdfs::path& run_dir) {
  const stdfs::path ckdir = run_dir / "checkpoints";
  int removed = 0;
  std::error_code ec;
  if (!stdfs::is_directory(ckdir, ec)) return 0;
  for (auto& e : stdfs::directory_iterator(ckdir, ec)) {
    const auto name = e.path().filename().string();
    if (name.rfind(".tmp-step-", 0) != 0 || !writer_is_dead(name)) continue;
    stdfs::remove_all(e.path(), ec);
    if (ec) {
      spdlog::warn("cannot remove the stale checkpoint temporary {}: {}", e.path().string(),
                   ec.message());
      continue;
    }
    spdlog::info("removed {} (an unfinished checkpoint of a process that is gone)",
                 e.path().string());
    ++removed;
  }
  return removed;
}

}  // namespace m3ret::trainer
