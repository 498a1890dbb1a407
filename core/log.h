// Logging through spdlog.
//
// Every line carries the rank ("[r0]"). Rank 0 logs info and above to the
// console; other ranks print only warnings and errors there. When a run
// directory is given, every rank also logs everything at debug and above to
// RUN/logs/rank-<r>.log. Use spdlog::info/warn/... after init().
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace m3ret::log {

// Sets up the default logger. `verbose` lowers the console level to debug.
// May be called again (e.g. once the run directory is known).
void init(int rank, const std::optional<std::filesystem::path>& run_dir = std::nullopt,
          bool verbose = false);

// Flushes all sinks (call before exit or abort).
void flush();

// Where the console log and progress bars go: stderr by default. `terminal`
// says whether it is a terminal (a bar redrawn in place) or not (a plain line
// now and then). For tests; call before init().
void set_console(std::FILE* out, bool terminal);

// The text of a progress line: label, a bar of `bar_width` cells (0: none),
// done/total, rate, the time left at that rate (ETA), the time elapsed and
// `suffix`, e.g. "shard [#######.......] 120/500 34.2/s ETA 0:11 elapsed 0:03".
std::string progress_text(const std::string& label, int64_t done, int64_t total, double elapsed_s,
                          const std::string& suffix, int bar_width);

// Progress of long work, on rank 0 only. On a terminal, a bar at the bottom
// of the console redrawn in place at most every 0.1 s; a log line printed
// meanwhile clears it, prints, and redraws it, so a log line never prints over
// the bar. Elsewhere (a file, a pipe, Slurm's output) a plain line at most
// every `log_every_s` seconds and at the end. Thread-safe: add() and
// set_suffix() may be called from workers.
class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled = true, double log_every_s = 10.0);
  ~Progress();
  void add(int64_t n = 1);
  void set_suffix(const std::string& suffix);  // e.g. "loss 0.42"
  void finish();

 private:
  struct State;
  State* s_;
};

// The text of a line of StageProgress: label, a bar of `bar_width` cells (0:
// none) filled by the expected share done, the stage about to start (`stage`
// of `stages`, 1-based; `stage` > `stages`: all done), the time left and the
// time elapsed, e.g. "demo [###.......] stage 3/8: train ETA 5:42 elapsed 0:09".
// The time left is elapsed * (1 - done_share) / done_share ("?" while nothing
// is done).
std::string stage_progress_text(const std::string& label, int64_t stage, int64_t stages,
                                const std::string& name, double elapsed_s, double done_share,
                                int bar_width);

// Progress of work done in stages of unequal length (the demo: synth, shard,
// train, ...), each with its expected weight (a share of the whole, in any
// unit). begin() logs a line as each stage starts and finish() one when all are
// done (stage_progress_text): with a bar on a terminal, plain otherwise. The
// stages may show their own progress bars meanwhile. Rank 0 only; not
// thread-safe.
class StageProgress {
 public:
  StageProgress(std::string label, std::vector<std::pair<std::string, double>> stages);
  // The next stage starts; `name` must be its name (an Error otherwise).
  void begin(const std::string& name);
  void finish();

 private:
  std::string label_;
  std::vector<std::pair<std::string, double>> stages_;
  size_t next_ = 0;
  double done_weight_ = 0, total_weight_ = 0;
  std::chrono::steady_clock::time_point start_;
  void log_line(const std::string& name) const;
};

}  // namespace m3ret::log
