// Child processes for the verbs that drive other verbs (demo, orchestrate).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace m3ret::launcher {

// Path of the running m3ret binary (/proc/self/exe).
std::filesystem::path self_path();

// Runs argv[0] (looked up in PATH) with argv, inheriting stdout/stderr, and
// waits. MPI launcher variables (OMPI_*, PMIX_*, PMI_*) are removed from the
// child's environment so a nested mpiexec starts a fresh job. Returns the exit
// status (128 + signal when killed). Throws m3ret::Error if it cannot start.
int run_child(const std::vector<std::string>& argv);

// The mpiexec command line that starts `ranks` copies of `args` on this node:
// mpiexec -n RANKS [--oversubscribe] [--allow-run-as-root when root] ARGS...
std::vector<std::string> mpiexec_command(const std::string& mpiexec, int ranks,
                                         const std::vector<std::string>& args);

// Joins argv into one shell-quoted line (for logs and docs).
std::string shell_line(const std::vector<std::string>& argv);

}  // namespace m3ret::launcher
