// Facts about this build, for run directories and `m3ret --version`.
#pragma once

#include <string>

namespace m3ret {
// `git describe --always --dirty` of the source tree at build time, or "unknown".
const char* git_revision();
}  // namespace m3ret
