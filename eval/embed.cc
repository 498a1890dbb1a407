#include "eval/embed.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "core/blas_threads.h"
#include "core/communicator.h"
#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/runtime.h"
#include "eval/embeddings_file.h"
#include "eval/gather.h"
#include "model/config.h"
#include "model/device.h"
#include "model/encoder_api.h"
#include "model/vit.h"
#include "sharding/shard_set.h"

namespace m3ret::eval {
namespace {

struct Item {
  std::string modality;
  int64_t index;  // within the modality
};

std::vector<Item> select_items(const sharding::ShardSet& shards, const EmbedOptions& opt) {
  // Sample groups (sharding/shard_set.h): endoscopy videos and stills are embedded apart.
  std::vector<std::string> wanted;
  if (opt.modalities.empty()) {
    for (const auto& m : shards.modalities()) wanted.push_back(m.name);
  } else {
    std::vector<std::string> present;
    for (const auto& m : shards.modalities())
      if (present.empty() || present.back() != m.modality) present.push_back(m.modality);
    for (const auto& m : opt.modalities)
      if (shards.groups_of(m).empty())
        throw Error(fmt::format("embed: modality '{}' is not in the shards {} (present: {})", m,
                                opt.shards.string(), fmt::join(present, ", ")));
    for (const auto& m : shards.modalities())  // ShardSet order, whatever the order asked
      if (std::find(opt.modalities.begin(), opt.modalities.end(), m.modality) !=
          opt.modalities.end())
        wanted.push_back(m.name);
  }
  std::vector<Item> items;
  for (const auto& m : wanted) {
    const int64_t n = shards.info(m).count;
    for (int64_t i = 0; i < n; ++i)
      if (opt.split.empty() || shards.meta(m, i).split == opt.split) items.push_back({m, i});
  }
  if (items.empty())
    throw Error(
        fmt::format("embed: no sample in the shards {} matches split '{}' and modalities [{}]",
                    opt.shards.string(), opt.split, fmt::join(wanted, ", ")));
  return items;
}

// The shards' [preprocess] section (SHARDS/index.json "preprocess") as JSON text, "" if absent.
std::string shards_preprocess(const std::filesystem::path& shards) {
  try {
    auto j = nlohmann::json::parse(fs::read_file(shards / "index.json"));
    return j.contains("preprocess") ? j.at("preprocess").dump() : "";
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("embed: {}: {}", (shards / "index.json").string(), e.what()));
  }
}

int default_threads() {
  int local = Runtime::initialized() ? std::max(1, Runtime::get().local_world()) : 1;
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / local);
}

// Encodes items[i] for i = rank, rank + size, ... Returns their embeddings,
// row j = item rank + j*size, and sets D. encoder == nullptr: the baseline
// without a model (`probe`: raw_pixel_features or histogram_features).
using Probe = std::vector<float> (*)(const uint8_t*, int64_t, int64_t, int64_t, int64_t, int64_t);
std::vector<float> encode_share(trainer::Encoder* encoder, Probe probe,
                                const sharding::ShardSet& shards, const std::vector<Item>& items,
                                int rank, int size, int64_t batch_size, int64_t& D) {
  std::vector<int64_t> mine;
  for (int64_t i = rank; i < static_cast<int64_t>(items.size()); i += size) mine.push_back(i);
  std::vector<float> out;
  log::Progress progress("embed", static_cast<int64_t>(mine.size()), rank == 0);
  size_t pos = 0;
  while (pos < mine.size()) {
    // A batch: consecutive items of my share with the same modality (same shape).
    const std::string& modality = items[mine[pos]].modality;
    size_t end = pos;
    while (end < mine.size() && end - pos < static_cast<size_t>(batch_size) &&
           items[mine[end]].modality == modality)
      ++end;
    const auto& info = shards.info(modality);
    const int64_t B = static_cast<int64_t>(end - pos);
    const int64_t numel = info.C * info.T * info.H * info.W;
    torch::Tensor batch = torch::empty({B, info.C, info.T, info.H, info.W}, torch::kUInt8);
    uint8_t* data = batch.data_ptr<uint8_t>();
    for (int64_t b = 0; b < B; ++b)
      shards.read_pixels(modality, items[mine[pos + b]].index, data + b * numel);

    torch::Tensor z;
    if (encoder) {
      auto on_device = batch.to(encoder->parameters().front().device());
      z = trainer::embed_batch(*encoder, on_device).to(torch::kCPU, torch::kFloat32).contiguous();
    } else {
      auto f = probe(data, B, info.C, info.T, info.H, info.W);
      z = torch::tensor(f).view({B, static_cast<int64_t>(f.size()) / B});
    }
    M3RET_CHECK(z.dim() == 2 && z.size(0) == B, "embed_batch returned shape {} for a batch of {}",
                fmt::format("{}", fmt::join(z.sizes(), "x")), B);
    if (D == 0) D = z.size(1);
    M3RET_CHECK(z.size(1) == D, "embed_batch returned dimension {} after {}", z.size(1), D);
    const float* zp = z.data_ptr<float>();
    out.insert(out.end(), zp, zp + B * D);
    progress.add(B);
    pos = end;
  }
  progress.finish();
  return out;
}

// Runs `work`, then agrees over ranks: rethrows the local error on the rank
// that failed and throws a pointer to it on the others.
template <class F>
void collective_step(Communicator& comm, const std::string& what, F&& work) {
  std::exception_ptr error;
  try {
    work();
  } catch (...) {
    error = std::current_exception();
  }
  if (comm.all(!error)) return;
  if (error) std::rethrow_exception(error);
  throw Error(fmt::format("embed: {} failed on another rank (see its log)", what));
}

}  // namespace

std::vector<std::string> checkpoint_train_modalities(const std::filesystem::path& checkpoint_dir) {
  const auto file = checkpoint_dir / "config.toml";
  if (!std::filesystem::is_regular_file(file))
    throw Error(fmt::format("embed: {}: no such file (the checkpoint's resolved configuration)",
                            file.string()));
  config::Document doc;
  doc.add_file(file);
  trainer::TrainConfig train;
  doc.bind("train", train);
  return train.modalities;
}

std::vector<float> raw_pixel_features(const uint8_t* pixels, int64_t B, int64_t C, int64_t T,
                                      int64_t H, int64_t W) {
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::from_blob(const_cast<uint8_t*>(pixels), {B, C, T, H, W}, torch::kUInt8)
                        .to(torch::kFloat32)
                        .mean(1, /*keepdim=*/true);  // [B, 1, T, H, W]
  x = torch::adaptive_avg_pool3d(x, {4, 16, 16}).reshape({B, kRawPixelDim});
  x = x - x.mean(1, true);
  x = x / x.norm(2, 1, true).clamp_min(1e-12);
  x = x.contiguous();
  return std::vector<float>(x.data_ptr<float>(), x.data_ptr<float>() + B * kRawPixelDim);
}

std::vector<float> histogram_features(const uint8_t* pixels, int64_t B, int64_t C, int64_t T,
                                      int64_t H, int64_t W) {
  M3RET_CHECK(C == 1 || C == 3, "histogram_features: C = {} (expected 1 or 3)", C);
  const int64_t plane = T * H * W;
  std::vector<float> out(static_cast<size_t>(B * kHistogramDim), 0.0f);
  for (int64_t b = 0; b < B; ++b) {
    float* h = out.data() + b * kHistogramDim;
    for (int64_t c = 0; c < 3; ++c) {
      const uint8_t* p = pixels + (b * C + (C == 1 ? 0 : c)) * plane;
      std::vector<int64_t> counts(kHistogramBins, 0);
      for (int64_t i = 0; i < plane; ++i) ++counts[p[i] * kHistogramBins / 256];
      for (int64_t k = 0; k < kHistogramBins; ++k)
        h[c * kHistogramBins + k] = static_cast<float>(
            std::sqrt(static_cast<double>(counts[k]) / static_cast<double>(plane)));
    }
    double norm = 0;
    for (int64_t k = 0; k < kHistogramDim; ++k) norm += double(h[k]) * h[k];
    norm = std::sqrt(std::max(norm, 1e-24));
    for (int64_t k = 0; k < kHistogramDim; ++k) h[k] = static_cast<float>(h[k] / norm);
  }
  return out;
}

void embed(const EmbedOptions& opt, Communicator& comm) {
  const int rank = comm.rank(), size = comm.size();
  std::unique_ptr<sharding::ShardSet> shards;
  std::vector<Item> items;
  trainer::LoadedEncoder loaded;
  std::vector<float> mine;
  int64_t D = 0;
  const Probe probe = opt.raw_pixels  ? &raw_pixel_features
                      : opt.histogram ? &histogram_features
                                      : nullptr;

  collective_step(comm, "encoding", [&] {
    if (opt.batch_size < 1)
      throw Error(fmt::format("embed: batch size {} must be >= 1", opt.batch_size));
    // The device first: a GPU that cannot be had stops before any work.
    const int local_rank = Runtime::initialized() ? Runtime::get().local_rank() : 0;
    const torch::Device device = probe
                                     ? torch::Device(torch::kCPU)
                                     : trainer::resolve_device(opt.device, local_rank, "--device");
    shards = sharding::ShardSet::open(opt.shards);
    items = select_items(*shards, opt);
    torch::NoGradGuard no_grad;
    // The encoder's GEMMs on OpenBLAS's pool (core/blas_threads.h).
    torch::set_num_threads(
        split_compute_threads(opt.threads > 0 ? opt.threads : default_threads()));
    if (opt.raw_pixels && opt.histogram)
      throw Error("embed: --raw-pixels and --histogram exclude each other");
    if (probe) {
      if (rank == 0)
        spdlog::info("embed: {} samples as {} on {} rank(s)", items.size(),
                     opt.raw_pixels ? "raw pixels" : "intensity histograms", size);
    } else {
      trainer::EncoderChoice choice;
      choice.random_init = opt.random_init;
      choice.weights = opt.weights;
      choice.pooling = opt.pooling;
      loaded = trainer::load_encoder(opt.checkpoint, choice);
      loaded.encoder->to(device);
      if (rank == 0)
        spdlog::info(
            "embed: {} samples with {} ({}step {}, {} weights, {} pooling) on {} rank(s), {}",
            items.size(), loaded.checkpoint.string(), opt.random_init ? "random init, " : "",
            loaded.step, loaded.weights, loaded.pooling, size, device.str());
    }
    mine = encode_share(loaded.encoder.get(), probe, *shards, items, rank, size, opt.batch_size, D);
  });

  // Gather: every rank's share; rows come back in the original sample order.
  const int64_t N = static_cast<int64_t>(items.size());
  std::vector<float> X = gather_round_robin(comm, mine, N, D);

  collective_step(comm, "writing " + opt.out.string(), [&] {
    if (rank != 0) return;
    EmbeddingSet set;
    set.N = N;
    set.D = D;
    set.X = std::move(X);
    for (const auto& item : items) {
      const auto& meta = shards->meta(item.modality, item.index);
      set.ids.push_back(meta.id);
      set.modality.push_back(shards->info(item.modality).modality);
      set.groups.push_back(meta.group);
      set.splits.push_back(meta.split);
      set.labels.push_back(meta.labels);
      set.sources.push_back(meta.source);
    }
    set.attrs.checkpoint = loaded.checkpoint.string();
    set.attrs.step = loaded.step;
    set.attrs.random_init = opt.random_init && !probe;
    set.attrs.encoder = opt.raw_pixels    ? "raw-pixels"
                        : opt.histogram   ? "histogram"
                        : opt.random_init ? "random-init"
                                          : "checkpoint";
    set.attrs.weights = loaded.weights;
    set.attrs.pooling = loaded.pooling;
    set.attrs.preprocess = shards_preprocess(opt.shards);
    if (!probe) set.attrs.train_modalities = checkpoint_train_modalities(loaded.checkpoint);
    write_embeddings(opt.out, set);
    spdlog::info("embed: wrote {} embeddings of dimension {} to {}", N, D, opt.out.string());
  });
}

}  // namespace m3ret::eval
