// The root configuration of the m3ret binary: every component's settings,
// one TOML file. Section names are the contract of configs/*.toml.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "data/settings.h"
#include "eval/settings.h"
#include "model/settings.h"
#include "sharding/settings.h"

namespace m3ret::launcher {

// [demo]: how `m3ret demo` runs the stages.
struct DemoConfig {
  int ranks = 2;                    // MPI ranks for shard, train and embed
  std::string mpiexec = "mpiexec";  // launcher program
  std::string eval_split = "test";  // which samples are embedded and evaluated
  int64_t verdict_k = 1;            // the recall@k the plain verdict is stated for
  // Extra encodings of the trained checkpoint shown beside it (not in the verdict):
  // "pooling" = the other pooling (CLS vs mean of patch tokens), "student" = the
  // student's weights when the trained one is SimDINO's teacher.
  std::vector<std::string> variants;

  template <class V>
  void visit(V& v) {
    v("ranks", ranks, "MPI ranks for the shard, train and embed stages", config::Range{1, 4096});
    v("mpiexec", mpiexec, "MPI launcher program used by the demo");
    v("eval_split", eval_split, "split embedded and evaluated (\"\" = all samples)");
    v("verdict_k", verdict_k,
      "recall@k for which the demo states whether the trained encoder beat chance and each "
      "baseline (one of eval.ks)",
      config::Range{1, 1e9});
    v("variants", variants,
      "also evaluate the trained checkpoint with the other pooling (\"pooling\") and with the "
      "student's weights (\"student\"), shown beside it");
  }
  void validate() const;
};

struct AppConfig {
  data::Settings data;          // [synth], [preprocess]
  sharding::Settings sharding;  // [shard], [loader]
  trainer::Settings trainer;    // [model], [train], [mae], [simdino]
  eval::Settings eval;          // [eval]
  DemoConfig demo;              // [demo]

  template <class V>
  void visit(V& v) {
    data.visit(v);
    sharding.visit(v);
    trainer.visit(v);
    eval.visit(v);
    v.section("demo", demo);
  }
};

// The demo configuration compiled into the binary (configs/demo.toml).
const char* embedded_demo_config();

// Loads defaults -> `file` (or, when `use_embedded_demo` and no file, the
// embedded demo config) -> overrides. Throws config::Error.
AppConfig load_app_config(const std::optional<std::filesystem::path>& file,
                          const std::vector<std::string>& overrides,
                          bool use_embedded_demo = false);

// Writes RUN/config.toml (resolved, with the git revision and command line in
// a header comment) and RUN/run.json (git revision, command, ranks, time).
void write_run_record(const std::filesystem::path& run_dir, AppConfig& cfg,
                      const std::string& command_line, int world);

// Resolved config as TOML text.
std::string resolved_toml(AppConfig& cfg);

}  // namespace m3ret::launcher
