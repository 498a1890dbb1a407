// Where `--config NAME` looks when NAME is not a file path: the configs that
// ship with m3ret, by name (`--config learning` = learning.toml).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace m3ret::launcher {

// The folders searched, in order: share/m3ret/configs of the prefix the binary is
// installed in (`cmake --install`; found relative to the binary), then the configs/
// folder of the source tree the binary was built from (a build tree). Folders that do
// not exist are left out.
std::vector<std::filesystem::path> shipped_config_dirs();

// `arg` itself when it names an existing file. Otherwise, when `arg` has no '/', the first
// of <dir>/<arg> and <dir>/<arg>.toml that exists in shipped_config_dirs(). Throws
// config::Error (a usage error) naming `arg` and every folder searched when nothing is found, or when `arg`
// names something that is not a regular file.
std::filesystem::path find_config(const std::string& arg);

}  // namespace m3ret::launcher
