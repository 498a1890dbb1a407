// `m3ret eval`: retrieval report from embeddings files, or straight from a
// checkpoint and shards (embedding first, all ranks sharing the work), with
// the random-init and raw-pixel baselines in the same report and one line
// appended to the run's eval history (docs/evaluation.md).
#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/runtime.h"
#include "eval/embed.h"
#include "eval/embeddings_file.h"
#include "eval/history.h"
#include "eval/report.h"
#include "eval/retrieval.h"
#include "eval/stats.h"
#include "launcher/verbs.h"

namespace m3ret::launcher {
namespace {

namespace stdfs = std::filesystem;

struct EvalArgs {
  std::string embeddings, out, checkpoint, shards, history;
  std::vector<std::string> baseline_files;  // --baseline EMB.h5 (named by file stem)
  std::vector<std::string> baselines;       // random-init, raw-pixels, histogram (checkpoint mode)
  std::vector<std::string> summarize;       // --summarize: reports of several seeds
  std::string weights = "auto", pooling;    // trainer::EncoderChoice (checkpoint mode)
  bool no_history = false;
  int64_t batch_size = 32;
};

// The path of `out` with "-<suffix>.h5" instead of its extension.
stdfs::path beside(const stdfs::path& out, const std::string& suffix) {
  auto p = out;
  p.replace_extension();
  return p.string() + "-" + suffix + ".h5";
}

// Evaluates every file; every one after the first must hold the first's
// samples (a baseline on other samples would be compared on other queries).
std::vector<std::pair<std::string, eval::Report>> evaluate_files(
    const std::vector<std::pair<std::string, stdfs::path>>& files, const eval::EvalConfig& ecfg) {
  std::vector<std::pair<std::string, eval::Report>> columns;
  eval::EmbeddingSet first;
  for (const auto& [name, file] : files) {
    eval::EmbeddingSet set = eval::read_embeddings(file);
    if (!columns.empty())
      eval::check_same_samples(first, files.front().second.string(), set,
                               fmt::format("eval: baseline {}", file.string()));
    columns.emplace_back(name, eval::evaluate(set, ecfg));
    if (columns.size() == 1) first = std::move(set);
    for (const auto& w : columns.back().second.warnings)
      spdlog::warn("eval: {} ({}): {}", name, file.string(), w);
  }
  return columns;
}

using Columns = std::vector<std::pair<std::string, stdfs::path>>;  // column name -> embeddings

// The flags of `m3ret eval`, into `a`.
void add_eval_flags(CLI::App* verb, EvalArgs& a) {
  auto* emb =
      verb->add_option("--embeddings", a.embeddings, "embeddings file written by `m3ret embed`")
          ->check(CLI::ExistingFile);
  verb->add_option("--baseline", a.baseline_files,
                   "more embeddings files shown beside the first (named by file name; repeatable)")
      ->check(CLI::ExistingFile);
  auto* ck = verb->add_option("--checkpoint", a.checkpoint,
                              "checkpoint folder or run folder (its latest): embed, then evaluate")
                 ->check(CLI::ExistingDirectory)
                 ->excludes(emb);
  verb->add_option("--shards", a.shards, "shard folder (with --checkpoint)")
      ->check(CLI::ExistingDirectory)
      ->needs(ck);
  verb->add_option("--baselines", a.baselines,
                   "with --checkpoint: baselines in the same report: random-init, raw-pixels, "
                   "histogram (comma-separated or repeated; default none)")
      ->delimiter(',')
      ->check(CLI::IsMember({"random-init", "raw-pixels", "histogram"}))
      ->needs(ck);
  verb->add_option("--weights", a.weights,
                   "with --checkpoint: teacher (SimDINO's EMA teacher), student, or auto (the "
                   "teacher when the checkpoint has one)")
      ->check(CLI::IsMember({"auto", "teacher", "student"}))
      ->capture_default_str()
      ->needs(ck);
  verb->add_option("--pooling", a.pooling,
                   "with --checkpoint: cls or mean (default: the run's model.embedding)")
      ->check(CLI::IsMember({"cls", "mean"}))
      ->needs(ck);
  verb->add_option("--summarize", a.summarize,
                   "instead of evaluating: summarise these report.json files of the same encoders "
                   "and rows (e.g. one benchmark run per seed) into --out and its .md twin: mean, "
                   "sd, min and max per row and class, and in how many the verdict held")
      ->check(CLI::ExistingFile)
      ->excludes(emb)
      ->excludes(ck);
  verb->add_option("--history", a.history,
                   "append one JSON line to this file (default with --checkpoint: "
                   "RUN/eval/history.jsonl of the checkpoint's run)");
  verb->add_flag("--no-history", a.no_history, "do not append to the history");
  verb->add_option("--batch-size", a.batch_size, "samples per forward pass when embedding")
      ->check(CLI::Range(1, 1 << 20));
  verb->add_option("--out", a.out, "report (.json); .md and .csv twins are written beside it")
      ->required();
}

// Checkpoint mode, on every rank: embeds the shards with the checkpoint's
// encoder, then with each baseline (the ranks share the work), into files
// beside the report.
Columns embed_columns(const EvalArgs& a, const eval::EvalConfig& ecfg, const stdfs::path& out) {
  eval::EmbedOptions e;
  e.checkpoint = a.checkpoint;
  e.shards = a.shards;
  e.split = ecfg.embed_split(ecfg.split);
  e.batch_size = a.batch_size;
  e.weights = a.weights;
  e.pooling = a.pooling;
  auto& comm = Runtime::get().world_comm();
  e.out = beside(out, "embeddings");
  eval::embed(e, comm);
  Columns files = {{"trained", e.out}};
  for (const auto& b : a.baselines) {
    eval::EmbedOptions eb = e;
    eb.random_init = b == "random-init";
    eb.raw_pixels = b == "raw-pixels";
    eb.histogram = b == "histogram";
    eb.out = beside(out, "embeddings-" + b);
    eval::embed(eb, comm);
    files.emplace_back(b, eb.out);
  }
  return files;
}

// Embeddings mode: the file, then its --baseline files.
Columns given_columns(const EvalArgs& a) {
  Columns files = {{"encoder", a.embeddings}};
  for (const auto& f : a.baseline_files) files.emplace_back(stdfs::path(f).stem().string(), f);
  return files;
}

// Evaluates the files, writes the report and its twins, prints the comparison
// and appends the history line (unless --no-history).
void report(const EvalArgs& a, const Columns& files, const eval::EvalConfig& ecfg) {
  const stdfs::path out = a.out;
  const auto columns = evaluate_files(files, ecfg);
  launcher::write_reports(out, columns);
  std::printf("%s%s", eval::whitening_line(columns.front().second).c_str(),
              eval::comparison_text(columns, eval::unseen_modalities(columns)).c_str());
  const int64_t k = columns.front().second.ks.front();  // as in the report
  std::printf("\n%s\n%s", eval::verdict_heading(columns, k).c_str(),
              eval::verdict_text(columns, k).c_str());
  std::fflush(stdout);
  stdfs::path history = a.history;
  if (history.empty() && !a.checkpoint.empty())
    history = eval::history_of_checkpoint(columns.front().second.source.checkpoint);
  if (!history.empty() && !a.no_history) eval::append_history(history, out, columns);
  // A checkpoint's recall also goes to its run's TensorBoard folder, beside the training scalars.
  const auto run = a.checkpoint.empty()
                       ? stdfs::path()
                       : eval::run_of_checkpoint(columns.front().second.source.checkpoint);
  if (!run.empty() && !a.no_history) eval::append_tensorboard(run, columns.front().second);
}

// `m3ret eval --summarize R1.json R2.json ...`: eval::seed_summary of the
// reports into --out (JSON) and its .md twin, printed too.
void summarize(const EvalArgs& a) {
  std::vector<nlohmann::ordered_json> reports;
  for (const auto& file : a.summarize) {
    if (stdfs::exists(a.out) && stdfs::equivalent(a.out, file))
      throw Error(
          fmt::format("eval --summarize: --out {} is one of the reports summarised", a.out));
    reports.push_back(eval::read_report_json(file));
  }
  const auto summary = eval::seed_summary(reports, {}, a.summarize);
  stdfs::path md = a.out;
  md.replace_extension(".md");
  const std::string text = eval::seed_summary_markdown(summary);
  fs::write_atomic(a.out, summary.dump(2) + "\n");
  fs::write_atomic(md, text);
  std::printf("%s", text.c_str());
  std::fflush(stdout);
}

// `m3ret eval`: the embeddings (given, or made from a checkpoint on every
// rank), then the report on rank 0.
void run_eval(CommonOptions& opts, const EvalArgs& a) {
  if (!a.summarize.empty()) {
    log::init(0, std::nullopt, opts.verbose);
    summarize(a);
    return;
  }
  AppConfig cfg = opts.load();
  const auto& ecfg = cfg.eval.eval;
  Columns files;
  if (!a.checkpoint.empty()) {
    if (a.shards.empty()) throw Error("eval: --checkpoint needs --shards");
    const int rank = start_mpi(opts.verbose);
    files = embed_columns(a, ecfg, a.out);
    if (rank != 0) return;
  } else {
    if (a.embeddings.empty())
      throw Error("eval: give --embeddings FILE, or --checkpoint CKPT --shards SHARDS");
    log::init(0, std::nullopt, opts.verbose);
    files = given_columns(a);
  }
  report(a, files, ecfg);
}

}  // namespace

void add_eval_verb(CLI::App& app) {
  auto* verb = app.add_subcommand(
      "eval",
      "Zero-shot retrieval: recall@k per modality and across modalities, from embeddings or "
      "straight from a checkpoint and shards");
  auto opts = std::make_shared<CommonOptions>();
  auto a = std::make_shared<EvalArgs>();
  opts->add_to(verb);
  add_eval_flags(verb, *a);
  verb->callback([opts, a] { run_eval(*opts, *a); });
}

void write_reports(const std::filesystem::path& json_path,
                   const std::vector<std::pair<std::string, eval::Report>>& columns,
                   int64_t verdict_k) {
  eval::write_reports(json_path, columns, verdict_k);
  auto md = json_path, csv = json_path;
  md.replace_extension(".md");
  csv.replace_extension(".csv");
  spdlog::info("eval: wrote {}, {} and {}", json_path.string(), md.string(), csv.string());
}

}  // namespace m3ret::launcher
