#include "sharding/sharder.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/csv.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/ordered_pool.h"
#include "data/dicom.h"
#include "data/manifest.h"
#include "data/reader.h"
#include "sharding/shard_index.h"
#include "sharding/shard_writer.h"

namespace m3ret::sharding {

namespace {

// Config struct -> JSON object (for index.json), through its visit().
struct JsonWriter {
  nlohmann::json j = nlohmann::json::object();
  template <class T>
  void operator()(const std::string& key, T& v, const std::string&) {
    j[key] = v;
  }
  template <class T, class C>
  void operator()(const std::string& key, T& v, const std::string&, const C&) {
    j[key] = v;
  }
  template <class S>
  void section(const std::string& key, S& s) {
    JsonWriter sub;
    s.visit(sub);
    j[key] = sub.j;
  }
};

template <class S>
nlohmann::json to_json_config(S s) {
  JsonWriter w;
  s.visit(w);
  return w.j;
}

// A shard to write: which rows of the manifest it holds, not the rows.
struct Job {
  std::string modality;  // the sample group (data::group_names())
  int64_t shard = 0;
  int64_t first_row = 0;    // within the group
  int64_t rows = 0;         // rows of the group from first_row on
  data::RowPosition start;  // where the first one is in the manifest
};

// One decoded row: a sample ready to store, or why it was refused.
struct Decoded {
  std::optional<EncodedSample> sample;
  std::string reject_reason;
};

// What a rerun must notice of an input without reading it: size and
// modification time of a file; of every file of a DICOM series folder (or of
// the folder of "FOLDER#ID"); "missing" when it does not exist (yet).
std::string input_state(const std::filesystem::path& path) {
  namespace stdfs = std::filesystem;
  stdfs::path target = path, series_dir;
  std::string series_id;
  if (data::dicom::split_series_ref(path, series_dir, series_id)) target = series_dir;
  std::error_code ec;
  auto stamp = [&](const stdfs::path& p) {
    const auto size = stdfs::file_size(p, ec);
    const auto time = stdfs::last_write_time(p, ec).time_since_epoch().count();
    return ec ? std::string("unreadable") : fmt::format("{}@{}", size, time);
  };
  const stdfs::file_status st = stdfs::status(target, ec);
  if (ec || !stdfs::exists(st)) return "missing";
  if (!stdfs::is_directory(st)) return stamp(target);
  std::vector<std::string> entries;
  for (auto it = stdfs::directory_iterator(target, ec); !ec && it != stdfs::directory_iterator();
       it.increment(ec)) {
    entries.push_back(it->path().filename().string() + "=" + stamp(it->path()));
  }
  std::sort(entries.begin(), entries.end());
  const std::string all = fmt::format("{}", fmt::join(entries, "/"));
  return "folder:" + fs::checksum_bytes(all.data(), all.size());
}

std::string shard_key(const std::vector<data::ManifestRow>& rows, const std::string& preprocess,
                      int64_t compression) {
  std::string text = fmt::format("{}\ncompression={}\n", preprocess, compression);
  for (const auto& r : rows) {
    text += fmt::format("{},{},{},{},{},{},{}\n", r.path.string(), r.modality,
                        fmt::join(r.labels, "|"), r.group, r.split, r.dataset, input_state(r.path));
  }
  return fs::checksum_bytes(text.data(), text.size()) + fmt::format(":{}", text.size());
}

void remove_stale_temps(const std::filesystem::path& final_path) {
  std::error_code ec;
  if (!std::filesystem::is_directory(final_path.parent_path(), ec)) return;
  const std::string prefix = final_path.filename().string() + ".tmp-";
  for (const auto& e : std::filesystem::directory_iterator(final_path.parent_path(), ec)) {
    if (e.path().filename().string().rfind(prefix, 0) == 0) std::filesystem::remove(e.path(), ec);
  }
}

// A manifest row decoded and encoded for its shard, or why it is refused (an
// InputError); any other error propagates.
Decoded decode_row(const data::ManifestRow& row, const std::string& modality,
                   const std::filesystem::path& manifest_dir, const data::PreprocessConfig& pp,
                   int compression) {
  Decoded d;
  try {
    data::Sample s = data::read_sample(row, manifest_dir, pp);
    if (s.modality != data::group_modality(modality)) {
      throw Error(fmt::format("{}: reader returned modality '{}' for a '{}' row", row.path.string(),
                              s.modality, modality));
    }
    d.sample = ShardWriter::encode(s, compression);
  } catch (const InputError& e) {
    d.reject_reason =
        e.path() == row.path.string() ? e.reason() : fmt::format("{}: {}", e.path(), e.reason());
  }
  return d;
}

// Decodes the rows of a job with `threads` threads and appends them in row
// order to the writer (which compresses nothing itself: workers encode). At
// most 4 * threads decoded rows wait for the writer at any time.
void write_shard(const Job& job, const std::vector<data::ManifestRow>& rows,
                 const std::filesystem::path& manifest_dir, const data::PreprocessConfig& pp,
                 int compression, int64_t threads, ShardWriter& writer, log::Progress& progress) {
  const size_t n = rows.size();
  const size_t workers = static_cast<size_t>(std::max<int64_t>(threads, 1));
  OrderedPool<size_t, Decoded> decoded(
      std::min(workers, std::max<size_t>(n, 1)), 4 * workers,
      [n](size_t i) { return i < n ? std::optional<size_t>(i) : std::nullopt; },
      [&](size_t i) { return decode_row(rows[i], job.modality, manifest_dir, pp, compression); });
  for (size_t i = 0; auto d = decoded.next(); ++i) {
    if (d->sample) {
      writer.append(std::move(*d->sample));
    } else {
      writer.add_reject(rows[i].path.string(), d->reject_reason);
    }
    progress.add(1);
  }
}

// Removes shard files (and temporaries) of an earlier run with another cut:
// any <modality>/shard-*.h5* that is not one of this run's shards.
void remove_orphan_shards(const std::filesystem::path& out_dir, const std::vector<Job>& jobs) {
  std::set<std::string> keep;
  for (const auto& j : jobs) keep.insert(shard_file_name(j.modality, j.shard));
  for (const auto& m : data::group_names()) {
    std::error_code ec;
    if (!std::filesystem::is_directory(out_dir / m, ec)) continue;
    for (const auto& e : std::filesystem::directory_iterator(out_dir / m)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("shard-", 0) != 0 || name.find(".h5") == std::string::npos) continue;
      if (keep.count(m + "/" + name)) continue;
      spdlog::info("shard: removing {} (not part of this cut)", e.path().string());
      std::filesystem::remove(e.path());
    }
  }
}

// A shard's header: its rows, and the clip its reads return (endoscopy: the
// [preprocess] clip out of the stored frames; anything else: all of T).
ShardHeader shard_header(const Job& job, const data::PreprocessConfig& pp, int compression,
                         const std::string& key) {
  ShardHeader h{job.modality, compression, job.first_row, job.rows, key};
  if (job.modality == "endoscopy") {
    h.clip_frames = pp.video_frames;
    h.clip_stride = pp.video_frame_stride;
  }
  return h;
}

// What every step of a sharding run reads: the paths and the settings.
struct Setup {
  std::filesystem::path manifest;      // absolute
  std::filesystem::path manifest_dir;  // relative paths of its rows start here
  std::filesystem::path out_dir;
  ShardConfig cfg;
  data::PreprocessConfig preprocess;
  data::PreprocessConfig stored;  // videos: all stored frames, not a clip
  int compression = 0;
  nlohmann::json pp_json;  // [preprocess], as index.json records it
  std::string pp_text;     // its text, part of every shard's key
};

// The run's setup; refuses shard.samples_per_shard below 1.
Setup make_setup(const std::filesystem::path& manifest_arg, const std::filesystem::path& out_dir,
                 const ShardConfig& cfg, const data::PreprocessConfig& preprocess) {
  Setup s;
  s.manifest = std::filesystem::absolute(manifest_arg).lexically_normal();
  s.manifest_dir = s.manifest.parent_path();
  s.out_dir = out_dir;
  if (cfg.samples_per_shard < 1) {
    throw Error(
        fmt::format("shard.samples_per_shard must be >= 1 (got {})", cfg.samples_per_shard));
  }
  s.cfg = cfg;
  s.preprocess = preprocess;
  s.stored = preprocess;
  s.stored.stored_video = true;
  s.compression = static_cast<int>(cfg.compression);
  s.pp_json = to_json_config(preprocess);
  s.pp_text = s.pp_json.dump();
  return s;
}

// The shards cut from the manifest: where each one's rows are, not the rows.
struct Plan {
  int64_t rows = 0;  // in the manifest
  std::vector<Job> jobs;
  std::string stamp;  // the manifest's size and modification time when it was read
};

std::string manifest_stamp(const std::filesystem::path& manifest) {
  return fmt::format("{}@{}", std::filesystem::file_size(manifest),
                     std::filesystem::last_write_time(manifest).time_since_epoch().count());
}

// Each sample group's rows (data/sample.h: endoscopy stills apart from the
// videos), in manifest order, cut into shards of rows_per_shard, in one
// streamed pass over the manifest that keeps a position per shard, not the
// rows (data::scan_manifest: 8 bytes per row while it runs).
Plan cut_jobs(const Setup& s) {
  struct Cut {
    int64_t per_shard = 0, rows = 0;
    std::vector<Job> jobs;
  };
  std::map<std::string, Cut> groups;
  Plan plan;
  plan.stamp = manifest_stamp(s.manifest);
  plan.rows =
      data::scan_manifest(s.manifest, [&](const data::ManifestRow& r, const data::RowPosition& at) {
        const std::string group = data::sample_group(r.modality, r.path);
        auto it = groups.find(group);
        if (it == groups.end()) {
          it = groups.emplace(group, Cut{}).first;
          it->second.per_shard = rows_per_shard(group, s.cfg, s.preprocess);
        }
        Cut& cut = it->second;
        if (cut.rows % cut.per_shard == 0) {
          cut.jobs.push_back(Job{group, int64_t(cut.jobs.size()), cut.rows, 0, at});
        }
        ++cut.rows;
        ++cut.jobs.back().rows;
      });
  for (const auto& m : data::group_names()) {
    auto it = groups.find(m);
    if (it == groups.end()) continue;
    for (auto& job : it->second.jobs) plan.jobs.push_back(std::move(job));
  }
  return plan;
}

// Every rank reads the manifest and derives the same jobs; rank 0
// creates the output folder and removes index.json (incomplete until
// rewritten). Every rank throws if any rank failed.
void plan_shards(const Setup& s, Communicator& comm, Plan& plan) {
  std::string error;
  try {
    plan = cut_jobs(s);
    if (comm.rank() == 0) {
      std::filesystem::create_directories(s.out_dir);
      std::filesystem::remove(s.out_dir / "index.json");
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!comm.all(error.empty())) {
    throw Error(error.empty()
                    ? "shard: another rank failed to read the manifest " + s.manifest.string()
                    : error);
  }
}

// The second pass: reads the rows of one job at a time from where the plan
// found them. The manifest must not change between the passes.
class JobRows {
 public:
  JobRows(const Setup& s, const Plan& plan)
      : manifest_(s.manifest), cursor_(s.manifest), stamp_(plan.stamp) {}

  // The rows of `job`: from its first row on, the next job.rows rows of its group.
  std::vector<data::ManifestRow> read(const Job& job) {
    if (manifest_stamp(manifest_) != stamp_) {
      throw Error(fmt::format("manifest {} changed while it was being sharded; run again",
                              manifest_.string()));
    }
    std::vector<data::ManifestRow> rows;
    rows.reserve(size_t(job.rows));
    cursor_.seek(job.start);
    data::ManifestRow row;
    while (int64_t(rows.size()) < job.rows && cursor_.next(row)) {
      if (data::sample_group(row.modality, row.path) == job.modality) rows.push_back(row);
    }
    if (int64_t(rows.size()) < job.rows) {
      throw Error(fmt::format(
          "manifest {} changed while it was being sharded ({} has {} of its {} rows); run again",
          manifest_.string(), shard_file_name(job.modality, job.shard), rows.size(), job.rows));
    }
    return rows;
  }

 private:
  std::filesystem::path manifest_;
  data::ManifestCursor cursor_;
  std::string stamp_;
};

// True when the shard file of `job` from an earlier run is current (same key,
// modality and rows) and its pixels are intact; a damaged file is logged.
bool shard_is_current(const std::filesystem::path& path, const Job& job, const std::string& key) {
  if (!std::filesystem::exists(path)) return false;
  try {
    ShardMetadata md = read_shard_metadata(path);
    const bool current = md.key == key && md.modality == job.modality && md.rows == job.rows &&
                         md.first_row == job.first_row;
    if (current) verify_shard_pixels(path, md);  // kept only when its pixels are intact
    return current;
  } catch (const Error& e) {
    spdlog::warn("rewriting damaged shard {}: {}", path.string(), e.what());
    return false;
  }
}

// Keeps the shard of `job` (its rows: `rows`) when it is current, else
// writes it. Returns true when it was written.
bool write_or_keep(const Setup& s, const Job& job, const std::vector<data::ManifestRow>& rows,
                   log::Progress& progress) {
  const auto path = s.out_dir / shard_file_name(job.modality, job.shard);
  const std::string key = shard_key(rows, s.pp_text, s.compression);
  remove_stale_temps(path);
  if (shard_is_current(path, job, key)) {
    progress.add(job.rows);
    return false;
  }
  ShardWriter writer(path, shard_header(job, s.preprocess, s.compression, key));
  write_shard(job, rows, s.manifest_dir, s.stored, s.compression, s.cfg.threads, writer, progress);
  writer.commit();
  return true;
}

// rejects.csv's lines for a shard's refused rows: [manifest line, CSV line]
// each, appended to `out`. The shard lists them in row order.
void add_reject_lines(const std::vector<data::ManifestRow>& rows, const ShardEntry& e,
                      nlohmann::json& out) {
  size_t next = 0;
  for (const auto& r : rows) {
    if (next < e.rejected_sources.size() && e.rejected_sources[next] == r.path.string()) {
      out.push_back({r.line, fmt::format("{},{},{},{}\n", csv::quote(r.path.string()), r.modality,
                                         r.line, csv::quote(e.rejected_reasons[next]))});
      ++next;
    }
  }
}

// One rank's part of the gather, as text: a line of JSON with its totals
// ({rank, ok, error, written, skipped, rows, samples, rejected, rejects
// (rejects.csv's lines of its shards), seconds}), then one line of compact
// JSON per shard entry, so that no rank builds a document of all shards.
struct RankPart {
  nlohmann::json head;
  std::string entries;
  std::string text() const { return head.dump() + "\n" + entries; }
};

// Writes or keeps this rank's shards (jobs rank, rank + world, ...), reading
// one shard's rows at a time. An error is reported in its part, not thrown.
RankPart write_rank_shards(const Setup& s, const Plan& plan, int rank, int world,
                           std::chrono::steady_clock::time_point t0) {
  int64_t my_rows = 0, written = 0, skipped = 0, samples = 0, rejected = 0;
  for (size_t g = rank; g < plan.jobs.size(); g += world) my_rows += plan.jobs[g].rows;
  RankPart mine{{{"rank", rank}, {"rejects", nlohmann::json::array()}}, ""};
  std::string error;
  try {
    log::Progress progress("shard", my_rows, rank == 0);
    JobRows reader(s, plan);
    for (size_t g = rank; g < plan.jobs.size(); g += world) {
      const Job& job = plan.jobs[g];
      const std::vector<data::ManifestRow> rows = reader.read(job);
      ++(write_or_keep(s, job, rows, progress) ? written : skipped);
      const ShardEntry entry = describe_shard(s.out_dir, shard_file_name(job.modality, job.shard));
      add_reject_lines(rows, entry, mine.head["rejects"]);
      mine.entries += nlohmann::json(entry).dump() + "\n";
      samples += entry.count;
      rejected += int64_t(entry.rejected_sources.size());
    }
    progress.finish();
  } catch (const std::exception& e) {
    error = fmt::format("rank {}: {}", rank, e.what());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  mine.head.update({{"ok", error.empty()},
                    {"error", error},
                    {"written", written},
                    {"skipped", skipped},
                    {"rows", my_rows},
                    {"samples", samples},
                    {"rejected", rejected},
                    {"seconds", seconds}});
  return mine;
}

// Every rank's part (a collective status: nobody hangs on a failure), as
// text; `heads` gets each part's first line. Throws on every rank, with every
// failed rank's error, if any failed.
std::vector<std::string> gather_results(Communicator& comm, const RankPart& mine, const Setup& s,
                                        std::vector<nlohmann::json>& heads) {
  std::vector<std::string> parts = comm.allgather(mine.text());
  std::vector<std::string> errors;
  for (const auto& part : parts) {
    heads.push_back(nlohmann::json::parse(part.substr(0, part.find('\n'))));
    if (!heads.back()["ok"].get<bool>()) errors.push_back(heads.back()["error"].get<std::string>());
  }
  if (!errors.empty()) {
    throw Error(fmt::format("shard {} -> {} failed: {}", s.manifest.string(), s.out_dir.string(),
                            fmt::join(errors, "; ")));
  }
  return parts;
}

// The shard entries of all parts, parsed one line at a time.
std::vector<ShardEntry> parse_entries(const std::vector<std::string>& parts) {
  std::vector<ShardEntry> entries;
  for (const auto& part : parts) {
    for (size_t b = part.find('\n') + 1, e; b < part.size(); b = e + 1) {
      e = part.find('\n', b);
      entries.push_back(nlohmann::json::parse(part.substr(b, e - b)).get<ShardEntry>());
    }
  }
  return entries;
}

// The run's totals from all ranks' parts; rank 0 (log_ranks) logs each rank's line.
ShardSummary summarise(const std::vector<nlohmann::json>& heads, const Plan& plan, double seconds,
                       bool log_ranks) {
  ShardSummary sum;
  sum.rows = plan.rows;
  sum.shards = int64_t(plan.jobs.size());
  sum.seconds = seconds;
  for (const auto& r : heads) {
    sum.written += r["written"].get<int64_t>();
    sum.skipped += r["skipped"].get<int64_t>();
    sum.samples += r["samples"].get<int64_t>();
    sum.rejected += r["rejected"].get<int64_t>();
    if (log_ranks) {
      const double secs = r["seconds"].get<double>();
      spdlog::info(
          "shard rank {}: {} rows, {} shards written, {} kept, {} samples, {} rejected, "
          "{:.1f} s ({:.1f} rows/s)",
          r["rank"].get<int>(), r["rows"].get<int64_t>(), r["written"].get<int64_t>(),
          r["skipped"].get<int64_t>(), r["samples"].get<int64_t>(), r["rejected"].get<int64_t>(),
          secs, secs > 0 ? double(r["rows"].get<int64_t>()) / secs : 0.0);
    }
  }
  return sum;
}

// rejects.csv: the refused rows of all ranks' shards, in manifest order.
std::string rejects_csv(const std::vector<nlohmann::json>& heads) {
  std::vector<std::pair<int64_t, std::string>> lines;  // (manifest line, csv line)
  for (const auto& r : heads) {
    for (const auto& l : r["rejects"]) {
      lines.emplace_back(l[0].get<int64_t>(), l[1].get<std::string>());
    }
  }
  std::sort(lines.begin(), lines.end());
  std::string csv = "path,modality,line,reason\n";
  for (const auto& l : lines) csv += l.second;
  return csv;
}

// Rank 0 writes rejects.csv, removes the shards of an earlier cut and writes
// index.json last (from the parts' entries); every rank throws if it failed.
void write_index_collectively(Communicator& comm, const Setup& s, const Plan& plan,
                              std::vector<std::string> parts,
                              const std::vector<nlohmann::json>& heads, const ShardSummary& sum) {
  std::string error;
  if (comm.rank() == 0) {
    try {
      fs::write_atomic(s.out_dir / "rejects.csv", rejects_csv(heads));
      nlohmann::json extra = {{"manifest", s.manifest.string()},
                              {"preprocess", s.pp_json},
                              {"shard",
                               {{"samples_per_shard", s.cfg.samples_per_shard},
                                {"shard_bytes", s.cfg.shard_bytes},
                                {"compression", s.compression}}}};
      remove_orphan_shards(s.out_dir, plan.jobs);
      std::vector<ShardEntry> entries = parse_entries(parts);
      parts.clear();
      write_index(s.out_dir, build_index(std::move(entries), extra));
      spdlog::info(
          "shard: {} rows -> {} samples in {} shards ({} written, {} kept), {} rejected "
          "(see {})",
          sum.rows, sum.samples, sum.shards, sum.written, sum.skipped, sum.rejected,
          (s.out_dir / "rejects.csv").string());
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (!comm.all(error.empty())) {
    throw Error(error.empty()
                    ? "shard: rank 0 failed to write " + (s.out_dir / "index.json").string()
                    : error);
  }
}

}  // namespace

int64_t rows_per_shard(const std::string& modality, const ShardConfig& cfg,
                       const data::PreprocessConfig& pp) {
  if (cfg.shard_bytes <= 0) return cfg.samples_per_shard;
  // The unified shape of the modality (data/preprocess.h).
  int64_t bytes = 0;
  if (modality == "ct" || modality == "mri") {
    bytes = pp.volume_slices * pp.volume_size * pp.volume_size;
  } else if (modality == "endoscopy") {
    bytes = 3 * pp.video_stored_frames * pp.image_size * pp.image_size;  // as stored
  } else if (modality == data::kEndoscopyImages) {
    bytes = 3 * pp.image_size * pp.image_size;
  } else {
    const auto& rgb = pp.rgb_modalities;
    const int64_t c = std::find(rgb.begin(), rgb.end(), modality) != rgb.end() ? 3 : 1;
    bytes = c * pp.image_size * pp.image_size;
  }
  return std::clamp<int64_t>(cfg.shard_bytes / std::max<int64_t>(bytes, 1), 1,
                             cfg.samples_per_shard);
}

std::string shard_file_name(const std::string& modality, int64_t k) {
  return fmt::format("{}/shard-{:05d}.h5", modality, k);
}

ShardSummary shard_dataset(const std::filesystem::path& manifest_arg,
                           const std::filesystem::path& out_dir, const ShardConfig& cfg,
                           const data::PreprocessConfig& preprocess, Communicator& comm) {
  const auto t0 = std::chrono::steady_clock::now();
  const Setup setup = make_setup(manifest_arg, out_dir, cfg, preprocess);
  Plan plan;
  plan_shards(setup, comm, plan);
  std::vector<nlohmann::json> heads;
  std::vector<std::string> parts;
  double seconds = 0;
  {
    const RankPart mine = write_rank_shards(setup, plan, comm.rank(), comm.size(), t0);
    seconds = mine.head["seconds"].get<double>();
    parts = gather_results(comm, mine, setup, heads);
  }
  const ShardSummary sum = summarise(heads, plan, seconds, comm.rank() == 0);
  write_index_collectively(comm, setup, plan, std::move(parts), heads, sum);
  return sum;
}

}  // namespace m3ret::sharding
