// The body of every m3ret executable: parses the command line with the verbs it is given, runs
// the chosen one and maps failures to exit codes (0 success, 2 usage error, 1 any other failure;
// docs/pipeline.md), with one line on stderr.
#pragma once

#include <initializer_list>
#include <string>

#include <CLI/CLI.hpp>

namespace m3ret::launcher {

using AddVerb = void (*)(CLI::App&);

// `name` is the binary's name in --version; `description` heads --help.
int run_cli(int argc, char** argv, const std::string& name, const std::string& description,
            std::initializer_list<AddVerb> verbs);

}  // namespace m3ret::launcher
