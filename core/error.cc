#include "core/error.h"

namespace m3ret {

void throw_check_failure(const char* condition, const char* file, int line,
                         const std::string& message) {
  throw Error(fmt::format("check failed: {} ({}:{}){}{}", condition, file, line,
                          message.empty() ? "" : ": ", message));
}

}  // namespace m3ret
