#include "launcher/cli_main.h"

#include <cstdio>
#include <exception>

#include "core/fork_server.h"
#include "core/build_info.h"
#include "core/config.h"
#include "core/log.h"
#include "core/runtime.h"
#include "launcher/verbs.h"

namespace m3ret::launcher {
namespace {

// One clear line on stderr; with several ranks, end the whole job so no rank
// waits forever in a collective.
int fail(const std::exception& e, int code) {
  const bool mpi = Runtime::initialized();
  const int rank = mpi ? Runtime::get().rank() : 0;
  const int world = mpi ? Runtime::get().world() : 1;
  const bool usage = code == 2;
  std::fprintf(stderr, "m3ret: %s%s: %s%s\n", usage ? "usage error" : "error",
               world > 1 ? (" (rank " + std::to_string(rank) + ")").c_str() : "", e.what(),
               usage && dynamic_cast<const CLI::ParseError*>(&e) ? " (see --help)" : "");
  log::flush();
  if (world > 1) Runtime::get().abort(code);
  return code;
}

}  // namespace

int run_cli(int argc, char** argv, const std::string& name, const std::string& description,
            std::initializer_list<AddVerb> verbs) {
  fork_server::start();  // before any thread: decoding children are forked from it
  set_command_line(argc, argv);
  CLI::App app{description, name};
  app.set_version_flag("--version", name + " " + git_revision());
  app.require_subcommand(1);
  for (AddVerb add : verbs) add(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    return fail(e, 2);
  } catch (const config::Error& e) {
    return fail(e, 2);
  } catch (const std::exception& e) {
    return fail(e, 1);
  }
  log::flush();
  return 0;
}

}  // namespace m3ret::launcher
