// Helpers shared by the test suites.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

namespace m3ret::testing {

// A fresh empty directory under the build's temp area, removed at destruction
// unless M3RET_KEEP_TEST_DIRS is set. Unique per test and rank-safe: all
// ranks of an mpiexec test get the same path (rank 0 creates it).
class TempDir {
 public:
  explicit TempDir(const std::string& name);
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& s) const { return path_ / s; }

 private:
  std::filesystem::path path_;
};

// The source tree (for configs/ and tests/ files).
std::filesystem::path source_dir();
// The built m3ret binary (for tests that run the CLI), from M3RET_BINARY.
std::filesystem::path m3ret_binary();

// The first Python interpreter that imports all of `modules` (e.g. "torch" or
// "numpy, h5py"): $M3RET_PYTHON, then the one CMake found, then /usr/bin/python3, then python3 on
// PATH. Empty when none does (tests then skip with that reason).
std::string python_with(const std::string& modules);

// Runs a shell command, returns its exit status; output goes to `log` if given.
int run_command(const std::string& cmd, std::string* output = nullptr);

// run_command without this process's Open MPI and PMIx variables (OMPI_*,
// PMIX_*, PMI_*): a test binary may be an MPI singleton, and those variables
// must not reach a child mpiexec or m3ret, which would join this process's job.
int run_command_outside_mpi(const std::string& cmd, std::string* output = nullptr);

// Runs `work` with the console log (core/log.h) pointed at a temporary file,
// as a terminal or not, and returns what it showed; the console is stderr again
// afterwards (logging re-initialised for rank 0).
std::string console_of(bool terminal, const std::function<void()>& work);

}  // namespace m3ret::testing
