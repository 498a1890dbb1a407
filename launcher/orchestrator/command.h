// Runs a short external command (sbatch, squeue, scontrol, scancel) and
// captures its standard output.
#pragma once

#include <string>
#include <vector>

namespace m3ret::orchestrator {

struct CommandResult {
  int status = -1;    // exit status; 127 when the program could not be started
  std::string out;    // stdout
  std::string err;    // stderr
};

// Runs argv (argv[0] looked up in PATH) with stdin from /dev/null and waits.
// The child gets clean_environment().
CommandResult run_capture(const std::vector<std::string>& argv);

// This process's environment without MPI launcher variables (OMPI_*, PMIX_*,
// PMI_*), so that mpirun in a job (and sbatch, which exports the environment)
// starts a fresh MPI job even when the caller runs under MPI.
std::vector<std::string> clean_environment();
// Pointers into `env` for exec, null-terminated.
std::vector<char*> environ_pointers(std::vector<std::string>& env);

}  // namespace m3ret::orchestrator
