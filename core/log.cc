#include "core/log.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <vector>

#include <fmt/format.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/ansicolor_sink.h>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/mutex.h"

namespace m3ret::log {

namespace {
int g_rank = 0;

// The console, with the progress bar drawn at its bottom, if any.
struct Console {
  Mutex mu;
  std::FILE* out M3RET_GUARDED_BY(mu) = stderr;
  bool terminal M3RET_GUARDED_BY(mu) = isatty(fileno(stderr)) != 0;
  std::string bar M3RET_GUARDED_BY(mu);  // the bar on screen; "" = none
};

Console& console() {
  static Console c;
  return c;
}

// spdlog's colour sink under the progress bar: a line first clears the bar,
// then the bar is drawn again below it.
class ConsoleSink final : public spdlog::sinks::sink {
 public:
  explicit ConsoleSink(std::FILE* out)
      : inner_(std::make_unique<spdlog::sinks::ansicolor_sink<spdlog::details::console_mutex>>(
            out, spdlog::color_mode::automatic)) {}
  void log(const spdlog::details::log_msg& msg) override {
    Console& c = console();
    MutexLock lock(c.mu);
    if (!c.bar.empty()) std::fputs("\r\x1b[K", c.out);
    inner_->log(msg);
    inner_->flush();
    if (!c.bar.empty()) {
      std::fputs(c.bar.c_str(), c.out);
      std::fflush(c.out);
    }
  }
  void flush() override { inner_->flush(); }
  void set_pattern(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter(std::unique_ptr<spdlog::formatter> f) override {
    inner_->set_formatter(std::move(f));
  }

 private:
  std::unique_ptr<spdlog::sinks::sink> inner_;
};

// "1:05:09", "5:09", "0:03".
std::string clock_text(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds) + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{}:{:02d}", s / 60, s % 60);
}

std::string rate_text(double rate) {
  if (rate >= 100) return fmt::format("{:.0f}/s", rate);
  if (rate >= 10) return fmt::format("{:.1f}/s", rate);
  return fmt::format("{:.2f}/s", rate);
}
}  // namespace

void set_console(std::FILE* out, bool terminal) {
  Console& c = console();
  MutexLock lock(c.mu);
  c.out = out;
  c.terminal = terminal;
  c.bar.clear();
}

std::string progress_text(const std::string& label, int64_t done, int64_t total, double elapsed_s,
                          const std::string& suffix, int bar_width) {
  std::string text = label;
  if (bar_width > 0) {
    const int filled =
        total > 0 ? static_cast<int>(bar_width * std::clamp<int64_t>(done, 0, total) / total) : 0;
    text += fmt::format(" [{}{}]", std::string(filled, '#'), std::string(bar_width - filled, '.'));
  }
  text += fmt::format(" {}/{}", done, total);
  if (done > 0 && elapsed_s > 0) {
    const double rate = done / elapsed_s;
    text += " " + rate_text(rate);
    if (done < total) text += " ETA " + clock_text((total - done) / rate);
  } else if (done < total) {
    text += " ETA ?";
  }
  text += " elapsed " + clock_text(elapsed_s);
  if (!suffix.empty()) text += " " + suffix;
  return text;
}

void init(int rank, const std::optional<std::filesystem::path>& run_dir, bool verbose) {
  g_rank = rank;
  std::vector<spdlog::sink_ptr> sinks;
  std::FILE* out = nullptr;
  {
    MutexLock lock(console().mu);
    out = console().out;
  }
  auto console_sink = std::make_shared<ConsoleSink>(out);
  if (rank == 0) {
    console_sink->set_level(verbose ? spdlog::level::debug : spdlog::level::info);
  } else {
    console_sink->set_level(spdlog::level::warn);
  }
  sinks.push_back(console_sink);
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
  bool drawn M3RET_GUARDED_BY(mu) = false;  // shown at least once
};

Progress::Progress(std::string label, int64_t total, bool enabled, double log_every_s)
    : s_(new State) {
  s_->label = std::move(label);
  s_->total = total;
  s_->enabled = enabled && g_rank == 0;
  {
    MutexLock lock(console().mu);
    s_->tty = console().terminal;
  }
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
  const int64_t done = s_->done += n;
  if (!s_->enabled) return;
  const auto now = std::chrono::steady_clock::now();
  MutexLock lock(s_->mu);
  const double since_last = std::chrono::duration<double>(now - s_->last).count();
  const double elapsed = std::chrono::duration<double>(now - s_->start).count();
  const bool last = done >= s_->total;
  if (s_->tty) {
    if (s_->drawn && since_last < 0.1 && !last) return;
    Console& c = console();
    MutexLock console_lock(c.mu);
    c.bar = progress_text(s_->label, done, s_->total, elapsed, s_->suffix, 30);
    std::fprintf(c.out, "\r%s\x1b[K", c.bar.c_str());
    std::fflush(c.out);
  } else {
    if (s_->drawn && since_last < s_->log_every_s && !last) return;
    spdlog::info("{}", progress_text(s_->label, done, s_->total, elapsed, s_->suffix, 0));
  }
  s_->drawn = true;
  s_->last = now;
}

void Progress::finish() {
  if (!s_ || s_->finished) return;
  s_->finished = true;
  if (s_->enabled && s_->tty) {
    Console& c = console();
    MutexLock lock(c.mu);
    if (!c.bar.empty()) std::fputs("\n", c.out);  // the bar stays, as the last state
    c.bar.clear();
    std::fflush(c.out);
  }
}

std::string stage_progress_text(const std::string& label, int64_t stage, int64_t stages,
                                const std::string& name, double elapsed_s, double done_share,
                                int bar_width) {
  std::string text = label;
  if (bar_width > 0) {
    const int filled = static_cast<int>(bar_width * std::clamp(done_share, 0.0, 1.0));
    text += fmt::format(" [{}{}]", std::string(filled, '#'), std::string(bar_width - filled, '.'));
  }
  if (stage > stages)
    return text +
           fmt::format(" {}/{} stages done elapsed {}", stages, stages, clock_text(elapsed_s));
  text += fmt::format(" stage {}/{}: {} ETA ", stage, stages, name);
  text += done_share > 0 ? clock_text(elapsed_s * (1 - done_share) / done_share) : "?";
  return text + " elapsed " + clock_text(elapsed_s);
}

StageProgress::StageProgress(std::string label, std::vector<std::pair<std::string, double>> stages)
    : label_(std::move(label)),
      stages_(std::move(stages)),
      start_(std::chrono::steady_clock::now()) {
  for (const auto& s : stages_) total_weight_ += s.second;
}

void StageProgress::begin(const std::string& name) {
  M3RET_CHECK(next_ < stages_.size() && stages_[next_].first == name,
              "{}: stage '{}' was not expected next (planned: {})", label_, name,
              next_ < stages_.size() ? stages_[next_].first : "none");
  if (next_ > 0) done_weight_ += stages_[next_ - 1].second;
  log_line(name);
  ++next_;
}

void StageProgress::finish() {
  if (next_ > stages_.size()) return;
  done_weight_ = total_weight_;
  next_ = stages_.size() + 1;
  log_line("");
}

void StageProgress::log_line(const std::string& name) const {
  if (g_rank != 0) return;
  bool terminal = false;
  {
    MutexLock lock(console().mu);
    terminal = console().terminal;
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  spdlog::info("{}", stage_progress_text(label_, static_cast<int64_t>(next_ + 1),
                                         static_cast<int64_t>(stages_.size()), name, elapsed,
                                         total_weight_ > 0 ? done_weight_ / total_weight_ : 0,
                                         terminal ? 30 : 0));
}

}  // namespace m3ret::log
