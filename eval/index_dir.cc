#include "eval/index_dir.h"

#include <cmath>
#include <map>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/fs.h"

namespace m3ret::eval {
namespace {

namespace stdfs = std::filesystem;

bool is_index_dir(const stdfs::path& dir) {
  std::error_code ec;
  if (!stdfs::is_regular_file(dir / "index.json", ec)) return false;
  try {
    auto j = nlohmann::json::parse(fs::read_file(dir / "index.json"));
    return j.value("format", "") == kIndexFormat;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

std::vector<float> normalized_rows(const EmbeddingSet& set) {
  std::vector<float> y(set.X.size());
  for (int64_t i = 0; i < set.N; ++i) {
    const float* x = set.row(i);
    double n2 = 0;
    for (int64_t j = 0; j < set.D; ++j) n2 += static_cast<double>(x[j]) * x[j];
    const float inv = n2 > 0 ? static_cast<float>(1.0 / std::sqrt(n2)) : 0.0f;
    for (int64_t j = 0; j < set.D; ++j) y[i * set.D + j] = x[j] * inv;
  }
  return y;
}

nlohmann::json build_index_dir(const IndexBuildOptions& opt) {
  const IndexSpec spec = parse_index_spec(opt.type);  // fail before any work
  std::error_code ec;
  if (stdfs::exists(opt.out, ec)) {
    if (!opt.overwrite)
      throw Error(fmt::format("index build: --out {} exists (pass --overwrite to replace it)",
                              opt.out.string()));
    if (!is_index_dir(opt.out))
      throw Error(
          fmt::format("index build: --out {} exists and is not an m3ret index; refusing to "
                      "replace it",
                      opt.out.string()));
  }
  EmbeddingSet all = read_embeddings(opt.embeddings);
  EmbeddingSet set;
  set.D = all.D;
  set.attrs = all.attrs;
  for (int64_t i = 0; i < all.N; ++i) {
    if (!opt.split.empty() && all.splits[i] != opt.split) continue;
    set.X.insert(set.X.end(), all.row(i), all.row(i) + all.D);
    set.ids.push_back(all.ids[i]);
    set.modality.push_back(all.modality[i]);
    set.groups.push_back(all.groups[i]);
    set.splits.push_back(all.splits[i]);
    set.labels.push_back(all.labels[i]);
    set.sources.push_back(all.sources.empty() ? "" : all.sources[i]);
    ++set.N;
  }
  if (set.N == 0)
    throw Error(fmt::format("index build: {} has no sample{}", opt.embeddings.string(),
                            opt.split.empty() ? "" : " of split '" + opt.split + "'"));
  set.X = normalized_rows(set);

  auto index = make_index(spec.str(), set.D, set.N);
  add_with_progress(*index, set.N, set.X.data(), "index " + spec.type, opt.batch);
  std::map<std::string, int64_t> per_modality;
  for (const auto& m : set.modality) ++per_modality[m];
  nlohmann::json info = {
      {"format", kIndexFormat},
      {"format_version", kIndexFormatVersion},
      {"type", index->spec()},
      {"dim", set.D},
      {"count", set.N},
      {"embeddings", stdfs::absolute(opt.embeddings).lexically_normal().string()},
      {"checkpoint", set.attrs.checkpoint},
      {"step", set.attrs.step},
      {"encoder", set.attrs.encoder},
      {"modalities", per_modality}};

  // Build beside the target, then swap it in.
  const stdfs::path out = stdfs::absolute(opt.out).lexically_normal();
  const stdfs::path tmp = fs::temp_sibling(out);
  try {
    stdfs::create_directories(tmp);
    write_embeddings(tmp / "embeddings.h5", set);
    index->save(tmp);
    fs::write_atomic(tmp / "index.json", info.dump(2) + "\n");
    if (stdfs::exists(out)) {
      const stdfs::path old = fs::temp_sibling(out);
      stdfs::rename(out, old);
      stdfs::rename(tmp, out);
      stdfs::remove_all(old, ec);
    } else {
      stdfs::rename(tmp, out);
    }
  } catch (const stdfs::filesystem_error& e) {
    stdfs::remove_all(tmp, ec);
    throw Error(fmt::format("index build: writing {}: {}", out.string(), e.what()));
  } catch (...) {
    stdfs::remove_all(tmp, ec);
    throw;
  }
  return info;
}

OpenedIndex open_index_dir(const stdfs::path& dir) {
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec))
    throw Error(
        fmt::format("index {}: no such folder (build one with `m3ret index build`)", dir.string()));
  if (!stdfs::is_regular_file(dir / "index.json", ec))
    throw Error(
        fmt::format("index {}: missing index.json; not an m3ret index folder", dir.string()));
  OpenedIndex out;
  out.dir = dir;
  try {
    out.info = nlohmann::json::parse(fs::read_file(dir / "index.json"));
    if (out.info.at("format").get<std::string>() != kIndexFormat)
      throw Error(fmt::format("format is '{}', expected '{}'",
                              out.info.at("format").get<std::string>(), kIndexFormat));
    if (out.info.at("format_version").get<int64_t>() != kIndexFormatVersion)
      throw Error(fmt::format("format_version is {}, this build reads version {}",
                              out.info.at("format_version").get<int64_t>(), kIndexFormatVersion));
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("index {}: index.json: {}", dir.string(), e.what()));
  } catch (const Error& e) {
    throw Error(fmt::format("index {}: index.json: {}", dir.string(), e.what()));
  }
  out.set = read_embeddings(dir / "embeddings.h5");
  const int64_t dim = out.info.at("dim").get<int64_t>(),
                count = out.info.at("count").get<int64_t>();
  if (out.set.D != dim || out.set.N != count)
    throw Error(fmt::format("index {}: embeddings.h5 holds {} x {}, index.json says {} x {}",
                            dir.string(), out.set.N, out.set.D, count, dim));
  out.index = load_index(out.info.at("type").get<std::string>(), dir, count, dim, out.set.X.data());
  return out;
}

}  // namespace m3ret::eval
