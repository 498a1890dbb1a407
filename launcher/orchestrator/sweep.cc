#include "launcher/orchestrator/sweep.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "data/manifest.h"

namespace m3ret::orchestrator {
namespace fs = std::filesystem;

namespace {

// Reads the tables of a sweep file, naming file:line for every error.
class Reader {
 public:
  explicit Reader(fs::path file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const toml::node* n, const std::string& key, const std::string& what) const {
    std::string where = file_.string();
    if (n) where += fmt::format(":{}", n->source().begin.line);
    throw Error(fmt::format("{}: sweep key '{}': {}", where, key, what));
  }

  // Marks every key of `t` used by the caller; an unknown one is an error.
  void check_keys(const toml::table& t, const std::string& prefix,
                  const std::vector<std::string>& known) const {
    for (const auto& [k, v] : t) {
      if (std::find(known.begin(), known.end(), std::string(k.str())) == known.end()) {
        fail(&v, prefix + std::string(k.str()), "unknown key");
      }
    }
  }

  template <class T>
  void get(const toml::table& t, const std::string& prefix, const char* key, T& out) const {
    const toml::node* n = t.get(key);
    if (!n) return;
    std::string full = prefix + key;
    if constexpr (std::is_same_v<T, std::string>) {
      if (!n->is_string()) fail(n, full, "expected a string");
      out = n->as_string()->get();
    } else if constexpr (std::is_same_v<T, int>) {
      if (!n->is_integer()) fail(n, full, "expected an integer");
      out = static_cast<int>(n->as_integer()->get());
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      if (!n->is_array()) fail(n, full, "expected an array of strings");
      out.clear();
      for (const auto& e : *n->as_array()) {
        if (!e.is_string()) fail(&e, full, "expected an array of strings");
        out.push_back(e.as_string()->get());
      }
    }
  }

  fs::path file_;
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
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
                           c == '_' || c == '=' || c == '+') ? c : '_';
  return out;
}

fs::path resolve(const fs::path& base, const std::string& p) {
  if (p.empty()) return {};
  fs::path path(p);
  return fs::weakly_canonical(path.is_absolute() ? path : base / path);
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

Sweep load_sweep(const fs::path& file, const ValidateFn& validate) {
  Sweep s;
  s.file = fs::absolute(file);
  Reader r(s.file);
  toml::table root;
  try {
    root = toml::parse_file(s.file.string());
  } catch (const toml::parse_error& e) {
    throw Error(fmt::format("{}:{}: {}", s.file.string(), e.source().begin.line,
                            std::string(e.description())));
  }
  r.check_keys(root, "", {"format", "sweep", "axes", "local", "slurm"});
  if (const auto* f = root.get("format")) {
    if (!f->is_string() || f->as_string()->get() != fmt::format("{}/{}", kSweepFormat, kSweepVersion)) {
      r.fail(f, "format", fmt::format("expected \"{}/{}\"", kSweepFormat, kSweepVersion));
    }
  }
  const toml::table* sw = root["sweep"].as_table();
  if (!sw) r.fail(nullptr, "sweep", "missing [sweep] table");
  r.check_keys(*sw, "sweep.", {"name", "base_config", "work_dir", "manifest", "ranks",
                               "max_retries", "preempted_exit_code", "set"});
  std::string base, work, manifest;
  r.get(*sw, "sweep.", "name", s.name);
  r.get(*sw, "sweep.", "base_config", base);
  r.get(*sw, "sweep.", "work_dir", work);
  r.get(*sw, "sweep.", "manifest", manifest);
  r.get(*sw, "sweep.", "ranks", s.ranks);
  r.get(*sw, "sweep.", "max_retries", s.max_retries);
  r.get(*sw, "sweep.", "preempted_exit_code", s.preempted_exit_code);
  r.get(*sw, "sweep.", "set", s.sets);
  if (s.name.empty() || s.name != safe(s.name) || s.name.find('=') != std::string::npos) {
    r.fail(sw->get("name"), "sweep.name", "must be a non-empty word of [A-Za-z0-9._-]");
  }
  if (base.empty()) r.fail(nullptr, "sweep.base_config", "missing");
  s.base_config = resolve(s.file.parent_path(), base);
  if (!fs::is_regular_file(s.base_config)) {
    r.fail(sw->get("base_config"), "sweep.base_config",
           fmt::format("'{}' is not a file", s.base_config.string()));
  }
  s.work_dir = resolve(fs::current_path(), work.empty() ? "sweep-" + s.name : work);
  s.manifest = resolve(s.file.parent_path(), manifest);
  if (s.ranks < 1) r.fail(sw->get("ranks"), "sweep.ranks", "must be >= 1");
  if (s.max_retries < 0) r.fail(sw->get("max_retries"), "sweep.max_retries", "must be >= 0");

  if (const toml::table* axes = root["axes"].as_table()) {
    for (const auto& [k, v] : *axes) {
      std::string key(k.str());
      for (const char* shared : {"synth.", "preprocess.", "shard."}) {
        if (key.rfind(shared, 0) == 0) {
          r.fail(&v, "axes." + key, "shards are shared by all runs of a data fraction; set this "
                                    "key in sweep.set, not as an axis");
        }
      }
      const toml::array* arr = v.as_array();
      if (!arr || arr->empty()) r.fail(&v, "axes." + key, "expected a non-empty array of values");
      std::vector<std::string> values;
      for (const auto& e : *arr) {
        if (e.is_table() || e.is_array()) r.fail(&e, "axes." + key, "values must be scalars");
        values.push_back(value_text(e));
        if (key == "data_fraction") {
          if (!e.is_number()) r.fail(&e, "axes.data_fraction", "expected numbers");
          double f = e.value<double>().value_or(0);
          if (!(f > 0 && f <= 1)) {
            r.fail(&e, "axes.data_fraction", fmt::format("{} is outside (0, 1]", values.back()));
          }
        }
      }
      s.axes.emplace_back(key, std::move(values));
    }
  }
  if (const toml::table* t = root["local"].as_table()) {
    r.check_keys(*t, "local.", {"max_parallel", "mpiexec"});
    r.get(*t, "local.", "max_parallel", s.local.max_parallel);
    r.get(*t, "local.", "mpiexec", s.local.mpiexec);
    if (s.local.max_parallel < 1) r.fail(t->get("max_parallel"), "local.max_parallel", "must be >= 1");
  }
  std::string templates = "../../slurm";
  if (const toml::table* t = root["slurm"].as_table()) {
    r.check_keys(*t, "slurm.", {"max_parallel", "partition", "account", "nodes", "ntasks_per_node",
                                "cpus_per_task", "gpus_per_node", "time", "eval_time", "mpiexec",
                                "templates", "extra_args"});
    r.get(*t, "slurm.", "max_parallel", s.slurm.max_parallel);
    r.get(*t, "slurm.", "partition", s.slurm.partition);
    r.get(*t, "slurm.", "account", s.slurm.account);
    r.get(*t, "slurm.", "nodes", s.slurm.nodes);
    r.get(*t, "slurm.", "ntasks_per_node", s.slurm.ntasks_per_node);
    r.get(*t, "slurm.", "cpus_per_task", s.slurm.cpus_per_task);
    r.get(*t, "slurm.", "gpus_per_node", s.slurm.gpus_per_node);
    r.get(*t, "slurm.", "time", s.slurm.time);
    r.get(*t, "slurm.", "eval_time", s.slurm.eval_time);
    r.get(*t, "slurm.", "mpiexec", s.slurm.mpiexec);
    r.get(*t, "slurm.", "templates", templates);
    r.get(*t, "slurm.", "extra_args", s.slurm.extra_args);
    if (s.slurm.max_parallel < 1 || s.slurm.nodes < 1 || s.slurm.ntasks_per_node < 1) {
      r.fail(t, "slurm", "max_parallel, nodes and ntasks_per_node must be >= 1");
    }
  }
  s.slurm.templates = resolve(s.file.parent_path(), templates);

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
      for (char c : data::sample_id(rows[i], dir)) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
      return h;
    };
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return hash(a) < hash(b); });
    size_t n = static_cast<size_t>(std::ceil(fraction * static_cast<double>(idx.size()) - 1e-9));
    for (size_t j = n; j < idx.size(); ++j) keep[idx[j]] = false;
  }
  std::vector<data::ManifestRow> kept;
  for (size_t i = 0; i < rows.size(); ++i) if (keep[i]) kept.push_back(rows[i]);
  fs::create_directories(out.parent_path());
  data::write_manifest(out, kept);
  return kept.size();
}

}  // namespace m3ret::orchestrator
