#include "eval/history.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iterator>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/tensorboard.h"
#include "core/utc.h"
#include "eval/report.h"

namespace m3ret::eval {
namespace fs = std::filesystem;

fs::path run_of_checkpoint(const fs::path& checkpoint) {
  const auto p = fs::absolute(checkpoint).lexically_normal();
  const auto parent = p.has_filename() ? p.parent_path() : p.parent_path().parent_path();
  return parent.filename() == "checkpoints" ? parent.parent_path() : fs::path();
}

fs::path history_of_checkpoint(const fs::path& checkpoint) {
  const auto run = run_of_checkpoint(checkpoint);
  return run.empty() ? fs::path() : run / "eval" / "history.jsonl";
}

void append_tensorboard(const fs::path& run_dir, const Report& report) {
  // Whitened recall is another curve than cosine recall: its own tags.
  const std::string prefix =
      report.whiten_dims > 0 ? fmt::format("eval-whitened{}", report.whiten_dims) : "eval";
  std::vector<std::pair<std::string, double>> scalars;
  for (const int64_t k : report.ks) {
    double sum = 0;
    int evaluated = 0;
    for (const auto* rows : {&report.per_modality, &report.cross_modal}) {
      for (const auto& row : *rows) {
        if (!row.metrics.evaluated()) continue;
        const double v = row.metrics.recall.at(k);
        scalars.emplace_back(fmt::format("{}/recall@{}/{}", prefix, k, row.name()), v);
        if (rows == &report.per_modality) sum += v, ++evaluated;
      }
    }
    if (evaluated > 0)
      scalars.emplace_back(fmt::format("{}/recall@{}/mean", prefix, k), sum / evaluated);
  }
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  // A run of its own (RUN/tensorboard/eval): TensorBoard drops an accumulator's later steps
  // when steps go back, as they do when an earlier checkpoint is evaluated after training.
  const auto dir = run_dir / "tensorboard" / "eval";
  EventWriter(dir).scalars(report.source.step, now, scalars);
  spdlog::info("eval: wrote step {} recall to {}", report.source.step, dir.string());
}

nlohmann::ordered_json history_line(const fs::path& report_path,
                                    const std::vector<std::pair<std::string, Report>>& columns,
                                    const std::string& time) {
  const Report& r = columns.front().second;
  nlohmann::ordered_json line;
  line["format"] = kHistoryFormat;
  line["format_version"] = kHistoryFormatVersion;
  line["step"] = r.source.step;
  line["checkpoint"] = r.source.checkpoint;
  line["time"] = time;
  line["report"] = fs::absolute(report_path).lexically_normal().string();
  line["split"] = r.split;
  line["relevance"] = r.relevance;
  line["whiten_dims"] = r.whiten_dims;
  const auto full = to_json(columns);
  line["unseen_modalities"] = full.at("unseen_modalities");
  line["warnings"] = r.warnings;
  const auto& encoders = full.at("encoders");  // report format 2: the encoder first
  line["per_modality"] = encoders.begin().value().at("per_modality");
  line["cross_modal"] = encoders.begin().value().at("cross_modal");
  line["baselines"] = nlohmann::ordered_json::object();
  for (auto it = std::next(encoders.begin()); it != encoders.end(); ++it)
    line["baselines"][it.key()] = it.value();
  return line;
}

void append_history(const fs::path& history, const fs::path& report_path,
                    const std::vector<std::pair<std::string, Report>>& columns) {
  const std::string text = history_line(report_path, columns, utc_now()).dump() + "\n";
  std::error_code ec;
  if (history.has_parent_path()) fs::create_directories(history.parent_path(), ec);
  int fd = ::open(history.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0)
    throw Error(
        fmt::format("eval: cannot open history {}: {}", history.string(), std::strerror(errno)));
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size()))
    throw Error(fmt::format("eval: writing history {}: {}", history.string(), std::strerror(err)));
  spdlog::info("eval: appended step {} to {}", columns.front().second.source.step,
               history.string());
}

}  // namespace m3ret::eval
