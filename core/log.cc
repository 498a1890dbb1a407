#include "core/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <vector>

#include <fmt/format.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "core/mutex.h"

namespace m3ret::log {

namespace {
int g_rank = 0;
}

void init(int rank, const std::optional<std::filesystem::path>& run_dir, bool verbose) {
  g_rank = rank;
  std::vector<spdlog::sink_ptr> sinks;
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  if (rank == 0) {
    console->set_level(verbose ? spdlog::level::debug : spdlog::level::info);
  } else {
    console->set_level(spdlog::level::warn);
  }
  sinks.push_back(console);
  if (run_dir) {
    auto dir = *run_dir / "logs";
    std::filesystem::create_directories(dir);
    auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(
        (dir / fmt::format("rank-{}.log", rank)).string(), /*truncate=*/false);
    file->set_level(spdlog::level::debug);
    sinks.push_back(file);
  }
  auto logger = std::make_shared<spdlog::logger>("m3ret", sinks.begin(), sinks.end());
  logger->set_pattern(fmt::format("[%Y-%m-%d %H:%M:%S.%e] [r{}] [%^%l%$] %v", rank));
  logger->set_level(spdlog::level::debug);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

void flush() {
  if (auto l = spdlog::default_logger()) l->flush();
}

struct Progress::State {
  std::string label;
  int64_t total = 0;
  std::atomic<int64_t> done{0};
  bool tty = false;
  bool enabled = true;
  bool finished = false;
  double log_every_s = 10;
  std::chrono::steady_clock::time_point start;
  // add() and set_suffix() may be called from several threads.
  Mutex mu;
  std::string suffix M3RET_GUARDED_BY(mu);
  std::chrono::steady_clock::time_point last M3RET_GUARDED_BY(mu);
};

Progress::Progress(std::string label, int64_t total, bool enabled, double log_every_s)
    : s_(new State) {
  s_->label = std::move(label);
  s_->total = total;
  s_->enabled = enabled && g_rank == 0;
  s_->tty = isatty(fileno(stderr)) != 0;
  s_->log_every_s = log_every_s;
  s_->start = std::chrono::steady_clock::now();
  MutexLock lock(s_->mu);
  s_->last = s_->start;
}

Progress::~Progress() {
  finish();
  delete s_;
}

void Progress::set_suffix(const std::string& suffix) {
  MutexLock lock(s_->mu);
  s_->suffix = suffix;
}

void Progress::add(int64_t n) {
  int64_t done = s_->done += n;
  if (!s_->enabled) return;
  auto now = std::chrono::steady_clock::now();
  MutexLock lock(s_->mu);
  double since_last = std::chrono::duration<double>(now - s_->last).count();
  double elapsed = std::chrono::duration<double>(now - s_->start).count();
  bool last = done >= s_->total;
  if (s_->tty) {
    if (since_last < 0.1 && !last) return;
    int width = 30;
    int filled = s_->total > 0
                     ? static_cast<int>(width * std::min<int64_t>(done, s_->total) / s_->total)
                     : 0;
    std::fprintf(stderr, "\r%s [%s%s] %lld/%lld %.0fs %s\x1b[K", s_->label.c_str(),
                 std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                 static_cast<long long>(done), static_cast<long long>(s_->total), elapsed,
                 s_->suffix.c_str());
    std::fflush(stderr);
  } else {
    if (since_last < s_->log_every_s && !last) return;
    spdlog::info("{}: {}/{} ({:.0f}s) {}", s_->label, done, s_->total, elapsed, s_->suffix);
  }
  s_->last = now;
}

void Progress::finish() {
  if (!s_ || s_->finished) return;
  s_->finished = true;
  if (s_->enabled && s_->tty) {
    std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }
}

}  // namespace m3ret::log
