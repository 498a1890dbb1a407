// `m3ret demo`: the main job end to end on the generated dataset.
//
//   synth (in process) -> mpiexec shard -> mpiexec train -> mpiexec embed
//   (trained, random-init, raw-pixels, histogram, and demo.variants) -> eval
//   (in process) -> table on stdout, DIR/report.json, DIR/report.md and
//   DIR/report.csv: per-modality recall with its chance level and 95 %
//   interval over patients, the cross-modal matrix and the modalities the
//   encoder never saw (evaluated but not in train.modalities), for the SSL
//   encoder against its baselines, and a plain verdict: did it beat each?
//   With --seeds, once per seed in DIR/seed-S, summarised in DIR/seeds.json.
//
// The demo itself is not an MPI program: it starts each distributed stage
// with mpiexec as a child, exactly as a user would by hand (docs/pipeline.md).
// A stop signal sent to the demo alone (`kill PID`) reaches that child too:
// nothing it started keeps running after it exits (StopRequested).
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/config.h"
#include "core/fs.h"
#include "core/log.h"
#include "data/synth.h"
#include "eval/embeddings_file.h"
#include "eval/report.h"
#include "eval/retrieval.h"
#include "launcher/process.h"
#include "launcher/verbs.h"
#include "trainer/trainer.h"

namespace m3ret::launcher {

namespace {

namespace stdfs = std::filesystem;

// A stop signal (process.h, stop_signals) sent to the demo: it stops after passing
// the request on to the stage that runs (process.h, run_passing_stop_on: the
// training checkpoints first) and exits 75, as `m3ret train` does; the same
// command continues from there.
struct StopRequested : Error {
  StopRequested(int sig, const std::string& stage)
      : Error(fmt::format("demo: {} received during stage '{}'", strsignal(sig), stage)) {}
};

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
    if (progress) progress->begin(prefix + name);
    spdlog::info("demo: {} ...", name);
    fn();
    // The stop signals are blocked in the demo (verb callback): one sent while
    // this stage ran waits until it is done.
    const sigset_t stop = stop_signals();
    const timespec now{0, 0};
    if (const int sig = sigtimedwait(&stop, nullptr, &now); sig > 0)
      throw StopRequested(sig, prefix + name);
    done(name, t0);
  }

 private:
  void run(const std::string& name, const std::vector<std::string>& cmd) {
    auto t0 = std::chrono::steady_clock::now();
    if (progress) progress->begin(prefix + name);
    spdlog::info("demo: {}: {}", name, shell_line(cmd));
    log::flush();
    int stop = 0;
    const int rc = run_passing_stop_on(cmd, {}, [&](int sig) {
      stop = sig;
      spdlog::warn("demo: {} received during stage '{}': asking its ranks to stop (SIGUSR1 to {})",
                   strsignal(sig), prefix + name, cmd[0]);
    });
    if (stop != 0) throw StopRequested(stop, prefix + name);
    if (rc != 0) {
      throw Error(fmt::format("demo stage '{}' failed with exit code {}; command: {}", name, rc,
                              shell_line(cmd)));
    }
    done(name, t0);
  }
  void done(const std::string& name, std::chrono::steady_clock::time_point t0) {
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    spdlog::info("demo: {} done in {:.1f}s", name, s);
    timings_[prefix + name] = s;
  }

 public:
  nlohmann::json timings_ = nlohmann::json::object();
  std::string prefix;                      // of the stage names ("seed-3/" with --seeds)
  log::StageProgress* progress = nullptr;  // the demo's overall progress line

 private:
  const AppConfig& cfg_;
  std::string self_;
};

// The demo folder must be new, empty, or an earlier demo's (marked by
// demo.json) made with the same configuration, whose stages are then reused.
// With `overwrite` an earlier demo's folder is emptied first (whatever its
// configuration); a folder m3ret did not make is never emptied.
void check_demo_dir(const stdfs::path& dir, const std::string& config_toml, bool overwrite) {
  if (!stdfs::exists(dir)) return;
  if (!stdfs::is_directory(dir)) {
    throw Error(fmt::format("demo: --out {} exists and is not a folder", dir.string()));
  }
  if (stdfs::directory_iterator(dir) == stdfs::directory_iterator()) return;
  if (!stdfs::exists(dir / "demo.json")) {
    throw Error(fmt::format(
        "demo: --out {} is not empty and holds no earlier demo (no demo.json); choose another "
        "folder (--overwrite only replaces an earlier demo)",
        dir.string()));
  }
  if (overwrite) {
    for (const auto& e : stdfs::directory_iterator(dir)) stdfs::remove_all(e.path());
    spdlog::info("demo: --overwrite: emptied {}", dir.string());
    return;
  }
  const auto mark = nlohmann::json::parse(fs::read_file(dir / "demo.json"), nullptr, false);
  if (!mark.is_discarded() && mark.is_object() && mark.contains("config") &&
      mark["config"] != config_toml) {
    throw Error(fmt::format(
        "demo: --out {} holds a demo made with a different configuration; rerun with the same "
        "--config/--set to reuse it, or replace it with --overwrite, or choose another folder",
        dir.string()));
  }
}

// Marks `dir` as a demo folder of `config_toml` (check_demo_dir accepts it again later).
void mark_demo_dir(const stdfs::path& dir, const std::string& config_toml) {
  fs::write_atomic(
      dir / "demo.json",
      nlohmann::json{{"format", "m3ret-demo"}, {"format_version", 1}, {"config", config_toml}}
              .dump() +
          "\n");
}

// The encoders of one demo run, in report order: the trained checkpoint, its
// baselines, then the variants of demo.variants (named "trained-...": shown,
// but not baselines of the verdict, eval/stats.h). `embed` lists the arguments
// of `m3ret embed` after the common ones.
struct EncoderJob {
  std::string name;
  std::vector<std::string> embed;
};

std::vector<EncoderJob> encoder_jobs(const AppConfig& cfg) {
  std::vector<EncoderJob> jobs = {{"trained", {}},
                                  {"random-init", {"--random-init"}},
                                  {"raw-pixels", {"--raw-pixels"}},
                                  {"histogram", {"--histogram"}}};
  const bool mean = cfg.trainer.model.embedding == "mean";
  for (const auto& v : cfg.demo.variants) {
    if (v == "pooling")
      jobs.push_back({mean ? "trained-cls" : "trained-mean", {"--pooling", mean ? "cls" : "mean"}});
    if (v == "student" && cfg.trainer.train.objective != "mae")
      jobs.push_back({"trained-student", {"--weights", "student"}});
  }
  return jobs;
}

// The stages of one demo, named as Stages names them after `prefix`, each
// weighted by its expected seconds for the overall progress line: the reference
// demo's (configs/demo.toml, docs/performance.md: synth 5.2 s, shard 4.3,
// train 336, an embed 4.5 with a checkpoint and 1.5 without, eval 0.02) as
// 1.5 s to start (a process, mpiexec) plus the rest, scaled by the samples
// generated (480 there) and, for train, by the samples trained on (steps x
// batch, 4800 there).
std::vector<std::pair<std::string, double>> demo_stages(const AppConfig& cfg,
                                                        const std::string& prefix) {
  const auto& s = cfg.data.synth;
  const double data = static_cast<double>(s.modalities.size() * s.classes.size()) *
                      static_cast<double>(s.patients_per_class * s.samples_per_patient) / 480.0;
  const double trained = static_cast<double>(cfg.trainer.train.max_steps) *
                         static_cast<double>(cfg.trainer.train.global_batch_size) / 4800.0;
  const double start = 1.5;
  std::vector<std::pair<std::string, double>> stages = {
      {prefix + "synth", start + 3.7 * data},
      {prefix + "shard", start + 2.8 * data},
      {prefix + "train", start + 334.5 * trained}};
  for (const auto& job : encoder_jobs(cfg)) {
    const bool encoder = job.name != "raw-pixels" && job.name != "histogram";
    stages.emplace_back(prefix + "embed (" + job.name + ")", start + (encoder ? 3.0 : 0) * data);
  }
  stages.emplace_back(prefix + "eval", 0.02 * data);
  return stages;
}

// Every stage of the demo: once, or once per seed in seed-S/.
std::vector<std::pair<std::string, double>> demo_plan(const AppConfig& cfg,
                                                      const std::vector<int64_t>& seeds) {
  if (seeds.empty()) return demo_stages(cfg, "");
  std::vector<std::pair<std::string, double>> plan;
  for (int64_t seed : seeds) {
    auto more = demo_stages(cfg, fmt::format("seed-{}/", seed));
    plan.insert(plan.end(), more.begin(), more.end());
  }
  return plan;
}

// One whole demo (synth -> shard -> train -> embed -> eval) in `dir` (checked
// with check_demo_dir by the caller) with `cfg`; returns the report's columns.
// Stages already done are reused.
std::vector<std::pair<std::string, eval::Report>> run_demo(AppConfig& cfg, const stdfs::path& dir,
                                                           Stages& stages) {
  stdfs::create_directories(dir);
  write_run_record(dir, cfg, command_line(), 1);
  mark_demo_dir(dir, resolved_toml(cfg));
  const std::string conf = (dir / "config.toml").string();
  const stdfs::path data = dir / "data", shards = dir / "shards", run = dir / "run";
  const std::string split = cfg.eval.eval.embed_split(cfg.demo.eval_split);

  stages.in_process("synth", [&] {
    if (stdfs::exists(data / "manifest.csv")) {
      spdlog::info("demo: reusing {}", (data / "manifest.csv").string());
    } else {
      claim_synth_dir(data, /*overwrite=*/true);  // the demo's own folder (demo.json)
      data::synthesize(cfg.data.synth, data);
    }
  });
  stages.mpi("shard", {"shard", "--config", conf, "--manifest", (data / "manifest.csv").string(),
                       "--out", shards.string()});
  stages.mpi("train", {"train", "--config", conf, "--shards", shards.string(), "--run-dir",
                       run.string(), "--resume", "auto"});
  const std::vector<EncoderJob> jobs = encoder_jobs(cfg);
  for (const auto& job : jobs) {
    std::vector<std::string> args = {"embed",
                                     "--config",
                                     conf,
                                     "--shards",
                                     shards.string(),
                                     "--out",
                                     (dir / ("embeddings-" + job.name + ".h5")).string()};
    if (job.name != "raw-pixels" && job.name != "histogram")
      args.insert(args.end(), {"--checkpoint", run.string()});
    if (!split.empty()) args.insert(args.end(), {"--split", split});
    args.insert(args.end(), job.embed.begin(), job.embed.end());
    stages.mpi("embed (" + job.name + ")", args);
  }
  std::vector<std::pair<std::string, eval::Report>> columns;
  stages.in_process("eval", [&] {
    for (const auto& job : jobs)
      columns.emplace_back(
          job.name, eval::evaluate(eval::read_embeddings(dir / ("embeddings-" + job.name + ".h5")),
                                   cfg.eval.eval));
    launcher::write_reports(dir / "report.json", columns, cfg.demo.verdict_k);
  });
  return columns;
}

std::string demo_verdict_text(const std::vector<std::pair<std::string, eval::Report>>& columns,
                              int64_t k) {
  return fmt::format(
             "Did the trained encoder beat chance and each baseline? (recall@{}: its 95 % interval "
             "over patients above chance and above the baseline's value)\n",
             k) +
         eval::verdict_text(columns, k);
}

// The demo verb itself (add_demo_verb), with the stop signals blocked.
void demo_verb(const CommonOptions& opts, const std::string& out, const std::vector<int64_t>& seeds,
               bool overwrite) {
  const char* world = std::getenv("OMPI_COMM_WORLD_SIZE");
  if (world && std::string(world) != "1") {
    throw Error("demo: start `m3ret demo` without mpiexec; it runs mpiexec itself");
  }
  AppConfig cfg = opts.load(/*use_embedded_demo=*/!opts.config);
  const auto& ks = cfg.eval.eval.ks;
  if (std::find(ks.begin(), ks.end(), cfg.demo.verdict_k) == ks.end())
    throw config::Error(fmt::format("config key 'demo.verdict_k' = {} is not one of eval.ks [{}]",
                                    cfg.demo.verdict_k, fmt::join(ks, ", ")));
  stdfs::path dir = stdfs::absolute(out);
  check_demo_dir(dir, resolved_toml(cfg), overwrite);
  stdfs::create_directories(dir);
  log::init(0, dir, opts.verbose);
  Stages stages(cfg);
  log::StageProgress progress("demo", demo_plan(cfg, seeds));
  stages.progress = &progress;
  auto t0 = std::chrono::steady_clock::now();
  std::string summary;
  if (seeds.empty()) {
    auto columns = run_demo(cfg, dir, stages);
    summary = eval::whitening_line(columns.front().second) +
              eval::comparison_text(columns, eval::unseen_modalities(columns)) + "\n" +
              demo_verdict_text(columns, cfg.demo.verdict_k);
  } else {
    write_run_record(dir, cfg, command_line(), 1);
    mark_demo_dir(dir, resolved_toml(cfg));
    std::vector<nlohmann::ordered_json> reports;
    for (int64_t seed : seeds) {
      AppConfig one = cfg;
      one.data.synth.seed = seed;
      one.trainer.train.seed = seed;
      spdlog::info("demo: seed {} in {}", seed, (dir / fmt::format("seed-{}", seed)).string());
      stages.prefix = fmt::format("seed-{}/", seed);
      check_demo_dir(dir / fmt::format("seed-{}", seed), resolved_toml(one), false);
      auto columns = run_demo(one, dir / fmt::format("seed-{}", seed), stages);
      summary += fmt::format("seed {}:\n{}{}", seed, eval::whitening_line(columns.front().second),
                             demo_verdict_text(columns, cfg.demo.verdict_k));
      reports.push_back(eval::to_json(columns, cfg.demo.verdict_k));
    }
    auto agg = eval::seed_summary(reports, seeds);
    fs::write_atomic(dir / "seeds.json", agg.dump(2) + "\n");
    fs::write_atomic(dir / "seeds.md", eval::seed_summary_markdown(agg));
    summary = eval::seed_summary_markdown(agg) + "\n" + summary;
  }
  progress.finish();
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stages.prefix.clear();
  stages.timings_["total"] = total;
  fs::write_atomic(dir / "timings.json", stages.timings_.dump(2) + "\n");
  std::printf("\n%s\n", summary.c_str());
  std::printf("Demo finished in %.0f s. Report: %s\n", total,
              (dir / (seeds.empty() ? "report.json" : "seeds.json")).c_str());
  std::fflush(stdout);
}

}  // namespace

void add_demo_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "demo", "Run the whole pipeline on a generated dataset: synth, shard, train, embed, eval");
  auto opts = std::make_shared<CommonOptions>();
  auto out = std::make_shared<std::string>("m3ret-demo");
  auto seeds = std::make_shared<std::vector<int64_t>>();
  auto overwrite = std::make_shared<bool>(false);
  opts->add_to(verb);
  verb->add_flag("--overwrite", *overwrite,
                 "empty an earlier demo's --out folder first instead of reusing its stages "
                 "(needed when the configuration changed)");
  verb->add_option("--out", *out, "demo folder (reused by a later demo: stages resume)")
      ->capture_default_str();
  verb->add_option("--seeds", *seeds,
                   "run the whole demo once per seed (synth.seed = train.seed = S, in OUT/seed-S) "
                   "and summarise recall over the seeds (mean, sd, min, max) in OUT/seeds.json "
                   "and OUT/seeds.md; comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 53));
  verb->callback([opts, out, seeds, overwrite] {
    // Before any thread starts (every thread inherits the mask): a stop signal
    // is taken only where the demo waits for one (StopRequested).
    const sigset_t stop = stop_signals();
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    try {
      demo_verb(*opts, *out, *seeds, *overwrite);
    } catch (const StopRequested& e) {
      spdlog::warn(
          "{}: stopped (exit {}); what is done is kept in {}, and the same command "
          "continues from there",
          e.what(), trainer::kExitPreempted, stdfs::absolute(*out).string());
      log::flush();
      std::exit(trainer::kExitPreempted);
    }
  });
}

}  // namespace m3ret::launcher
