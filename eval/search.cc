#include "eval/search.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "data/reader.h"
#include "model/encoder_api.h"

namespace m3ret::eval {
namespace {

// Fills a config struct from the JSON that sharding wrote with the same visitor.
struct JsonReader {
  const nlohmann::json& j;
  template <class T>
  void operator()(const std::string& key, T& v, const std::string&) {
    if (j.contains(key)) j.at(key).get_to(v);
  }
  template <class T, class C>
  void operator()(const std::string& key, T& v, const std::string& help, const C&) {
    (*this)(key, v, help);
  }
};

data::PreprocessConfig preprocess_of(const OpenedIndex& index) {
  const std::string& text = index.set.attrs.preprocess;
  if (text.empty())
    throw Error(
        fmt::format("index {}: its embeddings carry no preprocessing record (written by an "
                    "older m3ret embed); re-run `m3ret embed` and `m3ret index build`",
                    index.dir.string()));
  data::PreprocessConfig cfg;
  try {
    const auto j = nlohmann::json::parse(text);
    JsonReader reader{j};
    cfg.visit(reader);
  } catch (const nlohmann::json::exception& e) {
    throw Error(
        fmt::format("index {}: bad preprocessing record: {}", index.dir.string(), e.what()));
  }
  cfg.validate();
  return cfg;
}

std::string cell(const std::string& s, size_t width) {
  return s.size() > width ? s.substr(0, width - 1) + "~" : s;
}

}  // namespace

std::string infer_query_modality(const std::filesystem::path& query, const OpenedIndex& index) {
  std::string ext = query.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  static const std::set<std::string> videos = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v"};
  if (videos.count(ext)) return "endoscopy";
  std::set<std::string> present(index.set.modality.begin(), index.set.modality.end());
  if (present.size() == 1) return *present.begin();
  throw Error(
      fmt::format("search: cannot tell the modality of {}; give --modality (the index holds {})",
                  query.string(), fmt::join(present, ", ")));
}

std::vector<SearchHit> search_vector(const OpenedIndex& index, const float* q, int64_t k,
                                     const std::string& only_modality) {
  // With a modality filter, ask for more until k of that modality are found.
  const int64_t n = index.index->size();
  std::vector<SearchHit> hits;
  for (int64_t want = k; hits.size() < static_cast<size_t>(k); want = std::min(n, want * 4)) {
    std::vector<float> scores(static_cast<size_t>(want));
    std::vector<int64_t> ids(static_cast<size_t>(want));
    index.index->search(1, q, want, scores.data(), ids.data());
    hits.clear();
    for (int64_t i = 0; i < want && hits.size() < static_cast<size_t>(k); ++i) {
      const int64_t id = ids[i];
      if (id < 0) break;
      if (!only_modality.empty() && index.set.modality[id] != only_modality) continue;
      SearchHit h;
      h.rank = static_cast<int64_t>(hits.size()) + 1;
      h.score = scores[i];
      h.id = index.set.ids[id];
      h.modality = index.set.modality[id];
      h.group = index.set.groups[id];
      h.source = index.set.sources.empty() ? "" : index.set.sources[id];
      h.labels = index.set.labels[id];
      hits.push_back(std::move(h));
    }
    if (want >= n || only_modality.empty()) break;
  }
  return hits;
}

namespace {

// --only must name a modality the index holds (else no result could match).
void check_only_modality(const OpenedIndex& index, const std::string& only) {
  if (only.empty()) return;
  const std::set<std::string> present(index.set.modality.begin(), index.set.modality.end());
  if (!present.count(only))
    throw Error(
        fmt::format("search: --only {}: the index {} holds no sample of that modality "
                    "(it holds {})",
                    only, index.dir.string(), fmt::join(present, ", ")));
}

}  // namespace

SearchResult search_file(const OpenedIndex& index, const SearchOptions& opt) {
  if (opt.k < 1) throw Error(fmt::format("search: --k {} must be >= 1", opt.k));
  check_only_modality(index, opt.only_modality);
  const data::PreprocessConfig pre = preprocess_of(index);
  SearchResult result;
  result.query = opt.query.string();
  result.modality = opt.modality.empty() ? infer_query_modality(opt.query, index) : opt.modality;
  const auto& names = data::modality_names();
  if (std::find(names.begin(), names.end(), result.modality) == names.end())
    throw Error(fmt::format("search: unknown modality '{}' (one of {})", result.modality,
                            fmt::join(names, ", ")));

  data::ManifestRow row;
  row.path = std::filesystem::absolute(opt.query);
  row.modality = result.modality;
  data::Sample sample = data::read_sample(row, row.path.parent_path(), pre);

  torch::NoGradGuard no_grad;
  trainer::EncoderChoice choice;
  const auto& recorded = index.set.attrs;
  choice.weights = !opt.weights.empty()       ? opt.weights
                   : recorded.weights.empty() ? "auto"
                                              : recorded.weights;
  choice.pooling = !opt.pooling.empty() ? opt.pooling : recorded.pooling;
  trainer::LoadedEncoder loaded = trainer::load_encoder(opt.checkpoint, choice);
  if (!recorded.weights.empty() && loaded.weights != recorded.weights)
    spdlog::warn("search: the index holds {} embeddings but the query is encoded with the {}",
                 recorded.weights, loaded.weights);
  result.checkpoint = loaded.checkpoint.string();
  result.step = loaded.step;
  if (!index.set.attrs.checkpoint.empty() && index.set.attrs.checkpoint != result.checkpoint)
    spdlog::warn("search: the index was built from {} but the query is encoded with {}",
                 index.set.attrs.checkpoint, result.checkpoint);
  torch::Tensor batch = torch::from_blob(
      sample.pixels.data(), {1, sample.C, sample.T, sample.H, sample.W}, torch::kUInt8);
  torch::Tensor z =
      trainer::embed_batch(*loaded.encoder, batch).to(torch::kCPU, torch::kFloat32).contiguous();
  if (z.size(1) != index.index->dim())
    throw Error(
        fmt::format("search: checkpoint {} gives {}-dimensional embeddings but index {} holds {}",
                    result.checkpoint, z.size(1), index.dir.string(), index.index->dim()));
  z = z / z.norm(2, 1, true).clamp_min(1e-12);
  result.hits = search_vector(index, z.data_ptr<float>(), opt.k, opt.only_modality);
  return result;
}

nlohmann::ordered_json to_json(const SearchResult& r) {
  nlohmann::ordered_json j;
  j["query"] = r.query;
  j["modality"] = r.modality;
  j["checkpoint"] = r.checkpoint;
  j["step"] = r.step;
  j["results"] = nlohmann::ordered_json::array();
  for (const auto& h : r.hits)
    j["results"].push_back({{"rank", h.rank},
                            {"score", h.score},
                            {"id", h.id},
                            {"modality", h.modality},
                            {"labels", h.labels},
                            {"group", h.group},
                            {"source", h.source}});
  return j;
}

std::string to_table(const SearchResult& r) {
  std::string out = fmt::format("query: {} ({}), encoder step {}\n", r.query, r.modality, r.step);
  out += fmt::format("{:>4}  {:>7}  {:<28}  {:<10}  {:<24}  {}\n", "rank", "score", "id",
                     "modality", "labels", "source");
  for (const auto& h : r.hits)
    out += fmt::format("{:>4}  {:>7.4f}  {:<28}  {:<10}  {:<24}  {}\n", h.rank, h.score,
                       cell(h.id, 28), h.modality, cell(data::join_labels(h.labels), 24), h.source);
  if (r.hits.empty()) out += "(no result)\n";
  return out;
}

}  // namespace m3ret::eval
