#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <fmt/format.h>

#include "core/communicator.h"
#include "core/log.h"
#include "core/runtime.h"

namespace m3ret::testing {

TempDir::TempDir(const std::string& name) {
  std::string p;
  auto& comm = Runtime::get().world_comm();
  if (comm.rank() == 0) {
    auto base = std::filesystem::temp_directory_path() / "m3ret-tests";
    std::filesystem::create_directories(base);
    std::string tmpl = (base / (name + "-XXXXXX")).string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    p = tmpl;
  }
  comm.broadcast(p, 0);
  path_ = p;
}

TempDir::~TempDir() {
  auto& comm = Runtime::get().world_comm();
  comm.barrier();
  if (comm.rank() == 0 && !std::getenv("M3RET_KEEP_TEST_DIRS")) {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
}

std::filesystem::path source_dir() {
  const char* s = std::getenv("M3RET_SOURCE_DIR");
  return s ? std::filesystem::path(s) : std::filesystem::path(M3RET_DEFAULT_SOURCE_DIR);
}

std::filesystem::path m3ret_binary() {
  const char* s = std::getenv("M3RET_BINARY");
  return s ? std::filesystem::path(s) : std::filesystem::path(M3RET_DEFAULT_BINARY);
}

int run_command(const std::string& cmd, std::string* output) {
  FILE* pipe = popen((cmd + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  std::array<char, 4096> buf;
  std::string out;
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  int status = pclose(pipe);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int run_command_outside_mpi(const std::string& cmd, std::string* output) {
  return run_command(
      "for v in $(env | grep -oE '^(OMPI|PMIX|PMI)_[A-Za-z0-9_]*'); do unset $v; done; " + cmd,
      output);
}

std::string python_with(const std::string& modules) {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("M3RET_PYTHON")) candidates.emplace_back(env);
  candidates.emplace_back(M3RET_DEFAULT_PYTHON);  // what CMake found (tests/CMakeLists.txt)
  candidates.emplace_back("/usr/bin/python3");
  candidates.emplace_back("python3");
  for (const auto& py : candidates) {
    if (run_command(py + " -c 'import " + modules + "'") == 0) return py;
  }
  return "";
}

std::string console_of(bool terminal, const std::function<void()>& work) {
  std::FILE* f = std::tmpfile();
  log::set_console(f, terminal);
  log::init(0);
  work();
  log::flush();
  std::string out;
  std::rewind(f);
  for (int c; (c = std::fgetc(f)) != EOF;) out += static_cast<char>(c);
  std::fclose(f);
  log::set_console(stderr, isatty(fileno(stderr)) != 0);
  log::init(0);
  return out;
}

}  // namespace m3ret::testing
