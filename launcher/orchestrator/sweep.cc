#include "launcher/orchestrator/sweep.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include <boost/tokenizer.hpp>
#include <fmt/format.h>
#include <toml++/toml.h>

#include "core/config.h"
#include "data/manifest.h"

namespace m3ret::orchestrator {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const fs::path& file, const toml::node* n, const std::string& key,
                       const std::string& what) {
  std::string where = file.string();
  if (n) where += fmt::format(":{}", n->source().begin.line);
  throw Error(fmt::format("{}: sweep key '{}': {}", where, key, what));
}

// [sweep], typed and range-checked by core/config.h.
struct SweepSection {
  Sweep& s;
  std::string base_config, work_dir, manifest;
  template <class V>
  void visit(V& v) {
    v("name", s.name, "names the jobs (Slurm job names) and the report");
    v("base_config", base_config, "base config, relative to the sweep file");
    v("work_dir", work_dir, "work folder, relative to the current directory (default sweep-NAME)");
    v("manifest", manifest, "dataset manifest; empty = m3ret synth with the base config");
    v("ranks", s.ranks, "MPI ranks for shard, train and embed", config::Range{1, 1e6});
    v("max_retries", s.max_retries, "resubmissions of a failed job", config::Range{0, 1e6});
    v("preempted_exit_code", s.preempted_exit_code, "exit code of a train job that checkpointed",
      config::Range{1, 255});
    v("set", s.sets, "overrides applied to every run");
  }
};

struct LocalSection {
  LocalOptions& o;
  template <class V>
  void visit(V& v) {
    v("max_parallel", o.max_parallel, "jobs at once", config::Range{1, 1e6});
    v("mpiexec", o.mpiexec, "MPI launcher of local jobs");
  }
};

struct SlurmSection {
  SlurmOptions& o;
  std::string templates = "../../slurm";
  template <class V>
  void visit(V& v) {
    v("max_parallel", o.max_parallel, "jobs queued or running at once", config::Range{1, 1e6});
    v("partition", o.partition, "partition (empty = the cluster's default)");
    v("account", o.account, "account");
    v("nodes", o.nodes, "nodes of a train job", config::Range{1, 1e6});
    v("ntasks_per_node", o.ntasks_per_node, "MPI ranks per node of a train job",
      config::Range{1, 1e6});
    v("cpus_per_task", o.cpus_per_task, "CPUs per rank", config::Range{1, 1e6});
    v("gpus_per_node", o.gpus_per_node, "GPUs per node", config::Range{0, 1e6});
    v("time", o.time, "train job time limit");
    v("eval_time", o.eval_time, "time limit of the other jobs");
    v("mpiexec", o.mpiexec, "MPI launcher inside jobs");
    v("templates", templates, "folder with pretrain/shard/eval.sbatch, relative to the sweep file");
    v("extra_args", o.extra_args, "more sbatch arguments for every job");
  }
};

struct SweepFile {
  SweepSection sweep;
  LocalSection local;
  SlurmSection slurm;
  std::string format = fmt::format("{}/{}", kSweepFormat, kSweepVersion);
  template <class V>
  void visit(V& v) {
    v("format", format, "sweep file format",
      config::OneOf{{fmt::format("{}/{}", kSweepFormat, kSweepVersion)}});
    v.section("sweep", sweep);
    v.section("local", local);
    v.section("slurm", slurm);
  }
};

// A TOML value as the text of a --set override.
std::string value_text(const toml::node& n) {
  if (n.is_string()) return n.as_string()->get();
  std::ostringstream os;
  n.visit([&os](const auto& v) { os << v; });
  return os.str();
}

std::string short_key(const std::string& key) {
  if (key == "data_fraction") return "frac";
  if (key == "model.preset") return "preset";
  auto dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

std::string safe(const std::string& s) {
  std::string out;
  for (char c : s)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
            c == '=' || c == '+')
               ? c
               : '_';
  return out;
}

// The path of `key`'s value `p` (relative to `base`); a path the system refuses (e.g. a name
// longer than NAME_MAX) is an Error naming the key.
fs::path resolve(const fs::path& base, const std::string& p, const std::string& where,
                 const std::string& key) {
  if (p.empty()) return {};
  fs::path path(p);
  try {
    return fs::weakly_canonical(path.is_absolute() ? path : base / path);
  } catch (const fs::filesystem_error& e) {
    throw Error(fmt::format("{}: sweep key '{}': '{}' is not a usable path: {}", where, key, p,
                            e.code().message()));
  }
}

}  // namespace

std::vector<RunSpec> expand_axes(
    const std::vector<std::string>& base_sets,
    const std::vector<std::pair<std::string, std::vector<std::string>>>& axes) {
  size_t total = 1;
  for (const auto& [key, values] : axes) total *= values.size();
  std::vector<RunSpec> runs;
  for (size_t i = 0; i < total; ++i) {
    RunSpec run;
    run.sets = base_sets;
    std::string label;
    size_t rest = i;
    std::vector<size_t> pick(axes.size());
    for (size_t a = axes.size(); a-- > 0;) {
      pick[a] = rest % axes[a].second.size();
      rest /= axes[a].second.size();
    }
    for (size_t a = 0; a < axes.size(); ++a) {
      const auto& key = axes[a].first;
      const auto& value = axes[a].second[pick[a]];
      run.params[key] = value;
      if (key == "data_fraction") {
        run.data_fraction = std::stod(value);
      } else {
        run.sets.push_back(key + "=" + value);
      }
      if (axes[a].second.size() > 1) label += "-" + short_key(key) + "=" + value;
    }
    run.name = safe(fmt::format("r{:03d}{}", i, label));
    runs.push_back(std::move(run));
  }
  return runs;
}

namespace {

// [axes] (free-form keys, any scalar values), read from the parsed table; its
// keys are marked used in `doc` so that check_all_used accepts them.
void read_axes(Sweep& s, const toml::table& root, config::Document& doc) {
  const toml::node* node = root.get("axes");
  if (!node) return;
  const toml::table* axes = node->as_table();
  if (!axes) fail(s.file, node, "axes", "expected a table");
  doc.mark_section("axes");
  for (const auto& [k, v] : *axes) {
    std::string key(k.str());
    doc.find("axes." + key);
    for (const char* shared : {"synth.", "preprocess.", "shard."}) {
      if (key.rfind(shared, 0) == 0) {
        fail(s.file, &v, "axes." + key,
             "shards are shared by all runs of a data fraction; set this "
             "key in sweep.set, not as an axis");
      }
    }
    const toml::array* arr = v.as_array();
    if (!arr || arr->empty())
      fail(s.file, &v, "axes." + key, "expected a non-empty array of values");
    std::vector<std::string> values;
    for (const auto& e : *arr) {
      if (e.is_table() || e.is_array()) fail(s.file, &e, "axes." + key, "values must be scalars");
      values.push_back(value_text(e));
      if (key != "data_fraction") continue;
      if (!e.is_number()) fail(s.file, &e, "axes.data_fraction", "expected numbers");
      double f = e.value<double>().value_or(0);
      if (!(f > 0 && f <= 1))
        fail(s.file, &e, "axes.data_fraction", fmt::format("{} is outside (0, 1]", values.back()));
    }
    s.axes.emplace_back(key, std::move(values));
  }
}

// file:line of a [sweep] key for messages (the file alone when it is not given).
std::string where(config::Document& doc, const fs::path& file, const std::string& key) {
  auto f = doc.find(key);
  return f ? f->origin : file.string();
}

}  // namespace

std::vector<std::string> split_command(const std::string& value, const std::string& key,
                                       const std::string& where) {
  auto bad = [&](const std::string& why) {
    return config::Error(
        fmt::format("{}sweep key '{}': {} in \"{}\" (a command and its options, split like a "
                    "shell: quote with ' or \", escape with \\)",
                    where.empty() ? "" : where + ": ", key, why, value));
  };
  bool quoted = false;  // as the tokenizer sees it: either quote character toggles
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\\')
      ++i;
    else if (value[i] == '\'' || value[i] == '"')
      quoted = !quoted;
  }
  if (quoted) throw bad("an unterminated quote");
  using Separator = boost::escaped_list_separator<char>;
  std::vector<std::string> words;
  try {
    for (const auto& w : boost::tokenizer<Separator>(value, Separator("\\", " \t", "'\"")))
      if (!w.empty()) words.push_back(w);
  } catch (const boost::escaped_list_error& e) {
    throw bad(e.what());
  }
  if (words.empty()) throw bad("no command");
  return words;
}

Sweep load_sweep(const fs::path& file, const ValidateFn& validate) {
  Sweep s;
  s.file = fs::absolute(file);
  config::Document doc;
  doc.add_file(s.file);  // syntax errors: config file FILE:LINE:COLUMN
  SweepFile f{{s}, {s.local}, {s.slurm}};
  doc.bind("", f);
  const toml::table raw = toml::parse_file(s.file.string());
  // The axes are read from this file alone, so a base's would be lost: refuse it.
  if (const toml::node* base = raw.get("base")) {
    fail(s.file, base, "base",
         "a sweep file cannot extend another; the config named by sweep.base_config can");
  }
  read_axes(s, raw, doc);
  doc.check_all_used();
  if (s.name.empty() || s.name != safe(s.name) || s.name.find('=') != std::string::npos) {
    throw Error(
        fmt::format("{}: sweep key 'sweep.name': must be a non-empty word of [A-Za-z0-9._-]",
                    where(doc, s.file, "sweep.name")));
  }
  if (f.sweep.base_config.empty())
    throw Error(fmt::format("{}: sweep key 'sweep.base_config': missing", s.file.string()));
  auto resolve_key = [&](const fs::path& base, const std::string& p, const std::string& key) {
    return resolve(base, p, where(doc, s.file, key), key);
  };
  s.base_config = resolve_key(s.file.parent_path(), f.sweep.base_config, "sweep.base_config");
  if (!fs::is_regular_file(s.base_config)) {
    throw Error(fmt::format("{}: sweep key 'sweep.base_config': '{}' is not a file",
                            where(doc, s.file, "sweep.base_config"), s.base_config.string()));
  }
  s.work_dir = resolve_key(fs::current_path(),
                           f.sweep.work_dir.empty() ? "sweep-" + s.name : f.sweep.work_dir,
                           "sweep.work_dir");
  s.manifest = resolve_key(s.file.parent_path(), f.sweep.manifest, "sweep.manifest");
  s.slurm.templates = resolve_key(s.file.parent_path(), f.slurm.templates, "slurm.templates");
  split_command(s.local.mpiexec, "local.mpiexec", where(doc, s.file, "local.mpiexec"));
  split_command(s.slurm.mpiexec, "slurm.mpiexec", where(doc, s.file, "slurm.mpiexec"));
  s.runs = expand_axes(s.sets, s.axes);
  if (validate) {
    for (const auto& run : s.runs) {
      try {
        validate(s.base_config, run.sets);
      } catch (const std::exception& e) {
        throw Error(fmt::format("{}: run {}: {}", s.file.string(), run.name, e.what()));
      }
    }
  }
  return s;
}

size_t write_manifest_fraction(const fs::path& manifest, double fraction, const fs::path& out) {
  auto rows = data::read_manifest(manifest);
  fs::path dir = manifest.parent_path();
  std::map<std::string, std::vector<size_t>> train_by_modality;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].split == "train") train_by_modality[rows[i].modality].push_back(i);
  }
  std::vector<bool> keep(rows.size(), true);
  for (auto& [modality, idx] : train_by_modality) {
    // FNV-1a of the sample id: the same subset on every machine and run, and
    // a smaller fraction is a subset of a larger one.
    auto hash = [&](size_t i) {
      uint64_t h = 1469598103934665603ull;
      for (char c : data::sample_id(rows[i], dir))
        h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
      return h;
    };
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return hash(a) < hash(b); });
    size_t n = static_cast<size_t>(std::ceil(fraction * static_cast<double>(idx.size()) - 1e-9));
    for (size_t j = n; j < idx.size(); ++j) keep[idx[j]] = false;
  }
  std::vector<data::ManifestRow> kept;
  for (size_t i = 0; i < rows.size(); ++i)
    if (keep[i]) kept.push_back(rows[i]);
  fs::create_directories(out.parent_path());
  data::write_manifest(out, kept);
  return kept.size();
}

}  // namespace m3ret::orchestrator
