#include <optional>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/runtime.h"
#include "data/sample.h"
#include "launcher/verbs.h"
#include "sharding/sharder.h"

namespace m3ret::launcher {

namespace {

namespace stdfs = std::filesystem;

// SHARDS/source.json: the manifest a run cuts its shards from, written before
// the first shard (index.json records it too, but only once complete).
constexpr const char* kSourceFile = "source.json";

// The manifest the shards in `out` were cut from, when it says: index.json's
// (a complete folder), else source.json's (a run that did not finish).
std::optional<stdfs::path> shards_manifest(const stdfs::path& out) {
  for (const char* name : {"index.json", kSourceFile}) {
    std::error_code ec;
    if (!stdfs::is_regular_file(out / name, ec)) continue;
    const auto j = nlohmann::json::parse(fs::read_file(out / name), nullptr, false);
    if (j.is_object() && j.contains("manifest") && j["manifest"].is_string())
      return stdfs::path(j["manifest"].get<std::string>());
  }
  return std::nullopt;
}

stdfs::path canonical_path(const stdfs::path& p) {
  std::error_code ec;
  const stdfs::path c = stdfs::weakly_canonical(stdfs::absolute(p), ec);
  return ec ? stdfs::absolute(p).lexically_normal() : c;
}

// Shards cut from another manifest are not rewritten unless --overwrite, which
// deletes them first (a run of the same manifest resumes: complete shards are
// kept). Then `out` records `manifest` as its source.
void claim_shard_dir(const stdfs::path& out, const stdfs::path& manifest, bool overwrite) {
  const stdfs::path mine = canonical_path(manifest);
  const auto theirs = shards_manifest(out);
  if (theirs && canonical_path(*theirs) != mine) {
    std::vector<stdfs::path> remove;
    for (std::string name : {"index.json", "rejects.csv", kSourceFile})
      if (stdfs::exists(out / name)) remove.push_back(out / name);
    for (const auto& group : data::group_names())
      if (stdfs::exists(out / group)) remove.push_back(out / group);
    fs::refuse_or_overwrite(out,
                            {"shard",
                             "--out",
                             "shards cut from another manifest, " + theirs->string(),
                             {},
                             "continue them with that --manifest",
                             "which deletes them",
                             remove},
                            overwrite);
  }
  stdfs::create_directories(out);
  fs::write_atomic(
      out / kSourceFile,
      nlohmann::json{{"format", "m3ret-shards-source"}, {"manifest", mine.string()}}.dump(2) +
          "\n");
}

}  // namespace

void add_shard_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "shard",
      "Decode and preprocess a manifest into per-modality HDF5 shards (run under "
      "mpiexec/srun for several ranks)");
  auto opts = std::make_shared<CommonOptions>();
  auto manifest = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto overwrite = std::make_shared<bool>(false);
  opts->add_to(verb);
  verb->add_option("--manifest", *manifest, "manifest CSV (path,modality,labels,group,split)")
      ->required()
      ->check(CLI::ExistingFile);
  verb->add_option("--out", *out, "shard folder (SHARDS)")->required();
  verb->add_flag("--overwrite", *overwrite,
                 "replace shards that --out holds from another manifest (deletes them); "
                 "shards of the same manifest are resumed in any case");
  verb->callback([opts, manifest, out, overwrite] {
    AppConfig cfg = opts->load();
    start_mpi(opts->verbose);
    auto& rt = Runtime::get();
    check_on_root([&] { claim_shard_dir(*out, *manifest, *overwrite); });
    const sharding::ShardSummary sum = sharding::shard_dataset(
        *manifest, *out, cfg.sharding.shard, cfg.data.preprocess, rt.world_comm());
    if (sum.samples == 0) {  // nothing to train on is a failure, not a success
      throw Error(sum.rows == 0
                      ? fmt::format("shard: {} has no rows: no sample was written", *manifest)
                      : fmt::format("shard: all {} rows of {} were rejected: no sample was written "
                                    "(the reason for each row is in {})",
                                    sum.rows, *manifest,
                                    (std::filesystem::path(*out) / "rejects.csv").string()));
    }
  });
}

}  // namespace m3ret::launcher
