// Logging through spdlog.
//
// Every line carries the rank ("[r0]"). Rank 0 logs info and above to the
// console; other ranks print only warnings and errors there. When a run
// directory is given, every rank also logs everything at debug and above to
// RUN/logs/rank-<r>.log. Use spdlog::info/warn/... after init().
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace m3ret::log {

// Sets up the default logger. `verbose` lowers the console level to debug.
// May be called again (e.g. once the run directory is known).
void init(int rank, const std::optional<std::filesystem::path>& run_dir = std::nullopt,
          bool verbose = false);

// Flushes all sinks (call before exit or abort).
void flush();

// Progress of long work. On a terminal (and on rank 0 only) draws a bar on
// stderr that is redrawn in place; elsewhere logs a line at most every
// `log_every_s` seconds. Thread-safe: update() may be called from workers.
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

}  // namespace m3ret::log
