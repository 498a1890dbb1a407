#include "launcher/config_search.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/config.h"
#include "launcher/process.h"

#if !defined(M3RET_SOURCE_CONFIG_DIR) || !defined(M3RET_CONFIGS_FROM_BIN)
#error "launcher/CMakeLists.txt defines where the shipped configs are"
#endif

namespace m3ret::launcher {

namespace stdfs = std::filesystem;

std::vector<stdfs::path> shipped_config_dirs() {
  std::vector<stdfs::path> candidates = {self_path().parent_path() / M3RET_CONFIGS_FROM_BIN,
                                         stdfs::path(M3RET_SOURCE_CONFIG_DIR)};
  std::vector<stdfs::path> dirs;
  std::error_code ec;
  for (auto& d : candidates) {
    if (stdfs::is_directory(d, ec)) dirs.push_back(d.lexically_normal());
  }
  return dirs;
}

stdfs::path find_config(const std::string& arg) {
  std::error_code ec;
  const stdfs::path given(arg);
  if (stdfs::exists(given, ec)) {
    if (!stdfs::is_regular_file(given, ec)) {
      throw config::Error(fmt::format("config '{}' is not a regular file", arg));
    }
    return given;
  }
  const auto dirs = shipped_config_dirs();
  if (arg.find('/') == std::string::npos && !arg.empty()) {
    for (const auto& dir : dirs) {
      for (const auto& name : {arg, arg + ".toml"}) {
        if (stdfs::is_regular_file(dir / name, ec)) return dir / name;
      }
    }
  }
  std::vector<std::string> where;
  for (const auto& d : dirs) where.push_back(d.string());
  throw config::Error(fmt::format(
      "config file '{}' does not exist{}", arg,
      arg.find('/') != std::string::npos || dirs.empty()
          ? std::string()
          : fmt::format(", and no shipped config of that name in {}", fmt::join(where, ", "))));
}

}  // namespace m3ret::launcher
