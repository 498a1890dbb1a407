// Sweep files (format "m3ret-sweep" v1): a base config plus axes, expanded to
// runs. See docs/orchestrator.md for the file format.
//
//   [sweep]
//   name = "tiny"                     # names the jobs (Slurm job names) and the report
//   base_config = "../demo.toml"      # relative to the sweep file
//   work_dir = "sweep-tiny"           # relative to the current directory (or absolute)
//   manifest = ""                     # dataset manifest; "" = `m3ret synth` with the base config
//   ranks = 1                         # MPI ranks for shard, train and embed
//   max_retries = 2                   # resubmissions of a failed train job (preemptions are free)
//   preempted_exit_code = 75          # exit code of a train job that checkpointed on SIGUSR1/SIGTERM
//   set = ["train.max_steps=20"]      # overrides applied to every run
//
//   [axes]                            # the cartesian product of these lists is the set of runs
//   "model.preset" = ["tiny", "small"]
//   data_fraction = [0.5, 1.0]        # special axis: share of the training rows kept
//   "train.seed" = [1, 2]             # any other key is a config key, passed as --set
//
//   [local]  max_parallel = 2, mpiexec = "mpiexec"   # a command with options, e.g.
//            "mpiexec --mca btl tcp,self", split like a shell (see split_command)
//   [slurm]  max_parallel, partition, nodes, ntasks_per_node, cpus_per_task, gpus_per_node,
//            time, eval_time, account, extra_args = [...], templates = "slurm"
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"

namespace m3ret::orchestrator {

inline constexpr const char* kSweepFormat = "m3ret-sweep";
inline constexpr int kSweepVersion = 1;

struct LocalOptions {
  int max_parallel = 1;
  std::string mpiexec = "mpiexec";  // a command with options (split_command)
};

struct SlurmOptions {
  int max_parallel = 8;
  std::string partition;  // "" = the cluster's default
  std::string account;
  int nodes = 1;            // train jobs
  int ntasks_per_node = 1;  // MPI ranks per node for train jobs
  int cpus_per_task = 1;
  int gpus_per_node = 0;
  std::string time = "01:00:00";  // train job time limit
  std::string eval_time = "00:30:00";
  std::string mpiexec = "mpirun";       // a command with options (split_command)
  std::filesystem::path templates;      // folder with pretrain/shard/eval.sbatch
  std::vector<std::string> extra_args;  // more sbatch arguments for every job
};

// One point of the sweep.
struct RunSpec {
  std::string name;  // "r003-preset=small-frac=0.5-seed=2"
  double data_fraction = 1.0;
  std::vector<std::string> sets;              // "key=value", base `set` first, then the axes
  std::map<std::string, std::string> params;  // axis key -> value text (for reports)
};

struct Sweep {
  std::filesystem::path file;  // absolute
  std::string name;
  std::filesystem::path base_config;  // absolute
  std::filesystem::path work_dir;     // absolute
  std::filesystem::path manifest;     // absolute; empty = synthesize
  int ranks = 1;
  int max_retries = 2;
  int preempted_exit_code = 75;
  std::vector<std::string> sets;
  std::vector<std::pair<std::string, std::vector<std::string>>>
      axes;  // in key order (TOML tables are unordered)
  LocalOptions local;
  SlurmOptions slurm;
  std::vector<RunSpec> runs;  // the expansion, in a stable order
};

// Reads and expands a sweep file. [sweep], [local], [slurm] and `format` are
// read through core/config.h (typed, range-checked keys; an unknown key or
// section, a wrong type or a value out of range is a config::Error naming the
// key and FILE:LINE:COLUMN, as in every other config); [axes] is free-form
// (any scalar values) and its errors name FILE:LINE and the key too (empty
// axis, fraction outside (0, 1], a table as a value).
// `validate(base_config, sets)` is called with each run's overrides and throws
// (config::Error) when a key or value is wrong; the message is prefixed with
// the sweep file and the run.
// Axis keys under [synth], [preprocess] or [shard] are refused: the shards of
// a data fraction are shared by every run of the sweep (set them in `set`).
using ValidateFn = std::function<void(const std::filesystem::path& base_config,
                                      const std::vector<std::string>& sets)>;
Sweep load_sweep(const std::filesystem::path& file, const ValidateFn& validate = {});

// An `mpiexec` value split into words as a shell would (Boost's
// escaped_list_separator, as boost::program_options::split_unix): blanks
// separate words, ' or " quote (either one ends a quoted part), a backslash
// escapes a quote or a backslash. "mpiexec --mca btl tcp,self -x 'A=b c'" is
// {"mpiexec", "--mca", "btl", "tcp,self", "-x", "A=b c"}. Throws config::Error
// naming `key` (and `where`, e.g. FILE:LINE:COLUMN) for no word, an
// unterminated quote or a bad escape.
std::vector<std::string> split_command(const std::string& value, const std::string& key,
                                       const std::string& where = "");

// The cartesian product of `axes` (the last axis varies fastest) as runs,
// named rNNN-KEY=VALUE-... over the axes with more than one value.
std::vector<RunSpec> expand_axes(
    const std::vector<std::string>& base_sets,
    const std::vector<std::pair<std::string, std::vector<std::string>>>& axes);

// Keeps `fraction` of the train-split rows of `manifest` per modality (the
// first ceil(fraction * n) in a stable hash order of their paths; every other
// split is kept whole) and writes them to `out`. Returns the rows written.
size_t write_manifest_fraction(const std::filesystem::path& manifest, double fraction,
                               const std::filesystem::path& out);

}  // namespace m3ret::orchestrator
