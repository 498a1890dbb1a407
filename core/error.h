// Errors that cross a library boundary.
//
// User errors (bad input, bad config, missing file) throw m3ret::Error (or a
// subclass) with a message that names the file, key or value at fault. Broken
// invariants use M3RET_CHECK, which throws with the failed condition, file and
// line. Nothing in library code calls exit(); the binary turns an exception
// into one line on stderr and a non-zero exit code.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace m3ret {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Raised when an input file cannot be used (corrupt, unsupported, absurd).
// Carries the path so that callers can record it (e.g. in rejects.csv).
class InputError : public Error {
 public:
  InputError(std::string path, std::string reason)
      : Error(path + ": " + reason), path_(std::move(path)), reason_(std::move(reason)) {}
  const std::string& path() const { return path_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string path_;
  std::string reason_;
};

[[noreturn]] void throw_check_failure(const char* condition, const char* file, int line,
                                      const std::string& message);

}  // namespace m3ret

// Throws m3ret::Error("check failed: COND (file:line): message") when COND is false.
#define M3RET_CHECK(cond, ...)                                                             \
  do {                                                                                     \
    if (!(cond))                                                                           \
      ::m3ret::throw_check_failure(#cond, __FILE__, __LINE__, ::fmt::format(__VA_ARGS__)); \
  } while (0)
