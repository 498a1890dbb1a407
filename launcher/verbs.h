// The verbs of the `m3ret` binary. Each verb lives in its own file and adds
// one CLI11 subcommand; its callback does the work and throws on failure.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "eval/report.h"
#include "launcher/app_config.h"

namespace m3ret::launcher {

// Options every verb takes: --config FILE, --set KEY=VALUE (any number), -v.
struct CommonOptions {
  std::optional<std::string> config;
  std::vector<std::string> sets;
  bool verbose = false;

  void add_to(CLI::App* verb);
  // Loads the root config from these options.
  AppConfig load(bool use_embedded_demo = false) const;
};

// The original command line (for run records).
const std::string& command_line();
void set_command_line(int argc, char** argv);

// Starts MPI and logging for verbs that run under mpiexec; returns the rank.
int start_mpi(bool verbose, const std::optional<std::filesystem::path>& run_dir = std::nullopt);

// Runs `check` on rank 0 only (e.g. whether the output folder may be written);
// what it throws there is thrown as an Error on every rank, so that all ranks
// stop together before anything is written. Call after start_mpi().
void check_on_root(const std::function<void()>& check);

// The rule for synth's --out: a folder that holds files synth did not write
// (no OUT/synth.json) is refused unless `overwrite`; then OUT is marked as
// synth's, so that a rerun (or a run killed midway) may write it again.
void claim_synth_dir(const std::filesystem::path& out, bool overwrite);

// Writes REPORT.json and REPORT.md for one or more named reports.
void write_reports(const std::filesystem::path& json_path,
                   const std::vector<std::pair<std::string, eval::Report>>& columns,
                   int64_t verdict_k = 0);

void add_config_verb(CLI::App& app);
void add_synth_verb(CLI::App& app);
void add_import_verb(CLI::App& app);
void add_split_verb(CLI::App& app);
void add_shard_verb(CLI::App& app);
void add_train_verb(CLI::App& app);
void add_embed_verb(CLI::App& app);
void add_eval_verb(CLI::App& app);
void add_index_verb(CLI::App& app);
void add_search_verb(CLI::App& app);
void add_demo_verb(CLI::App& app);
void add_model_verb(CLI::App& app);
void add_export_verb(CLI::App& app);
void add_orchestrate_verb(CLI::App& app);
void add_status_verb(CLI::App& app);

}  // namespace m3ret::launcher
