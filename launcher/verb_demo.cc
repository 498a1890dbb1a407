// `m3ret demo`: the main job end to end on the generated dataset.
//
//   synth (in process) -> mpiexec shard -> mpiexec train -> mpiexec embed
//   (trained, random-init and raw pixels) -> eval (in process) -> table on
//   stdout, DIR/report.json, DIR/report.md and DIR/report.csv: per-modality
//   recall, the cross-modal matrix and the modalities the encoder never saw
//   (evaluated but not in train.modalities: MRI in configs/demo.toml), for the
//   SSL encoder against its two baselines.
//
// The demo itself is not an MPI program: it starts each distributed stage
// with mpiexec as a child, exactly as a user would by hand (docs/pipeline.md).
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/fs.h"
#include "core/log.h"
#include "data/synth.h"
#include "eval/embeddings_file.h"
#include "eval/report.h"
#include "eval/retrieval.h"
#include "launcher/process.h"
#include "launcher/verbs.h"

namespace m3ret::launcher {

namespace {

namespace stdfs = std::filesystem;

class Stages {
 public:
  explicit Stages(const AppConfig& cfg) : cfg_(cfg), self_(self_path().string()) {}

  // Runs `m3ret VERB ARGS...` under mpiexec with the demo's rank count.
  void mpi(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), self_);
    run(name, mpiexec_command(cfg_.demo.mpiexec, cfg_.demo.ranks, args));
  }

  template <class Fn>
  void in_process(const std::string& name, Fn fn) {
    auto t0 = std::chrono::steady_clock::now();
    spdlog::info("demo: {} ...", name);
    fn();
    done(name, t0);
  }

 private:
  void run(const std::string& name, const std::vector<std::string>& cmd) {
    auto t0 = std::chrono::steady_clock::now();
    spdlog::info("demo: {}: {}", name, shell_line(cmd));
    log::flush();
    int rc = run_child(cmd);
    if (rc != 0) {
      throw Error(fmt::format("demo stage '{}' failed with exit code {}; command: {}", name, rc,
                              shell_line(cmd)));
    }
    done(name, t0);
  }
  void done(const std::string& name, std::chrono::steady_clock::time_point t0) {
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    spdlog::info("demo: {} done in {:.1f}s", name, s);
    timings_[name] = s;
  }

 public:
  nlohmann::json timings_ = nlohmann::json::object();

 private:
  const AppConfig& cfg_;
  std::string self_;
};

// The demo folder must be new, empty, or an earlier demo's (marked by demo.json).
void check_demo_dir(const stdfs::path& dir) {
  if (!stdfs::exists(dir)) return;
  if (!stdfs::is_directory(dir)) {
    throw Error(fmt::format("demo: --out {} exists and is not a folder", dir.string()));
  }
  bool empty = stdfs::directory_iterator(dir) == stdfs::directory_iterator();
  if (!empty && !stdfs::exists(dir / "demo.json")) {
    throw Error(fmt::format(
        "demo: --out {} is not empty and holds no earlier demo (no demo.json); choose another "
        "folder",
        dir.string()));
  }
}

}  // namespace

void add_demo_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "demo", "Run the whole pipeline on a generated dataset: synth, shard, train, embed, eval");
  auto opts = std::make_shared<CommonOptions>();
  auto out = std::make_shared<std::string>("m3ret-demo");
  opts->add_to(verb);
  verb->add_option("--out", *out, "demo folder (reused by a later demo: stages resume)")
      ->capture_default_str();
  verb->callback([opts, out] {
    const char* world = std::getenv("OMPI_COMM_WORLD_SIZE");
    if (world && std::string(world) != "1") {
      throw Error("demo: start `m3ret demo` without mpiexec; it runs mpiexec itself");
    }
    AppConfig cfg = opts->load(/*use_embedded_demo=*/!opts->config);
    stdfs::path dir = stdfs::absolute(*out);
    check_demo_dir(dir);
    stdfs::create_directories(dir);
    log::init(0, dir, opts->verbose);
    write_run_record(dir, cfg, command_line(), 1);
    fs::write_atomic(dir / "demo.json",
                     nlohmann::json{{"format", "m3ret-demo"}, {"format_version", 1}}.dump() +
                         "\n");
    const std::string conf = (dir / "config.toml").string();
    const stdfs::path data = dir / "data", shards = dir / "shards", run = dir / "run";
    const std::string split = cfg.demo.eval_split;

    Stages stages(cfg);
    auto t0 = std::chrono::steady_clock::now();
    stages.in_process("synth", [&] {
      if (stdfs::exists(data / "manifest.csv")) {
        spdlog::info("demo: reusing {}", (data / "manifest.csv").string());
      } else {
        data::synthesize(cfg.data.synth, data);
      }
    });
    stages.mpi("shard", {"shard", "--config", conf, "--manifest", (data / "manifest.csv").string(),
                         "--out", shards.string()});
    stages.mpi("train", {"train", "--config", conf, "--shards", shards.string(), "--run-dir",
                         run.string(), "--resume", "auto"});
    std::vector<std::string> embed = {"embed", "--config", conf, "--checkpoint", run.string(),
                                      "--shards", shards.string()};
    if (!split.empty()) embed.insert(embed.end(), {"--split", split});
    auto trained_args = embed, random_args = embed;
    std::vector<std::string> pixels_args = {"embed", "--config", conf, "--raw-pixels", "--shards",
                                            shards.string(), "--out",
                                            (dir / "embeddings-raw-pixels.h5").string()};
    if (!split.empty()) pixels_args.insert(pixels_args.end(), {"--split", split});
    trained_args.insert(trained_args.end(), {"--out", (dir / "embeddings-trained.h5").string()});
    random_args.insert(random_args.end(),
                       {"--out", (dir / "embeddings-random-init.h5").string(), "--random-init"});
    stages.mpi("embed (trained)", trained_args);
    stages.mpi("embed (random init)", random_args);
    stages.mpi("embed (raw pixels)", pixels_args);

    std::vector<std::pair<std::string, eval::Report>> columns;
    stages.in_process("eval", [&] {
      columns.emplace_back("trained", eval::evaluate(
                                          eval::read_embeddings(dir / "embeddings-trained.h5"),
                                          cfg.eval.eval));
      columns.emplace_back("random init",
                           eval::evaluate(eval::read_embeddings(dir / "embeddings-random-init.h5"),
                                          cfg.eval.eval));
      columns.emplace_back("raw pixels",
                           eval::evaluate(eval::read_embeddings(dir / "embeddings-raw-pixels.h5"),
                                          cfg.eval.eval));
      launcher::write_reports(dir / "report.json", columns);
    });
    double total =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    stages.timings_["total"] = total;
    fs::write_atomic(dir / "timings.json", stages.timings_.dump(2) + "\n");
    std::printf("\n%s\n", eval::comparison_text(columns, eval::unseen_modalities(columns)).c_str());
    std::printf("Demo finished in %.0f s. Report: %s (and report.md, report.csv); run: %s\n", total,
                (dir / "report.json").c_str(), run.c_str());
    std::fflush(stdout);
  });
}

}  // namespace m3ret::launcher
