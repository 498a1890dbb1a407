// m3ret: one binary, one verb per stage. See `m3ret --help` and docs/.
#include <cstdio>
#include <exception>

#include <spdlog/spdlog.h>

#include "core/build_info.h"
#include "core/config.h"
#include "core/log.h"
#include "core/runtime.h"
#include "launcher/verbs.h"

namespace {

// One clear line on stderr; with several ranks, end the whole job so no rank
// waits forever in a collective.
int fail(const std::exception& e, int code) {
  const bool mpi = m3ret::Runtime::initialized();
  const int rank = mpi ? m3ret::Runtime::get().rank() : 0;
  const int world = mpi ? m3ret::Runtime::get().world() : 1;
  const bool usage = code == 2;
  std::fprintf(stderr, "m3ret: %s%s: %s%s\n", usage ? "usage error" : "error",
               world > 1 ? (" (rank " + std::to_string(rank) + ")").c_str() : "", e.what(),
               usage && dynamic_cast<const CLI::ParseError*>(&e) ? " (see --help)" : "");
  m3ret::log::flush();
  if (world > 1) m3ret::Runtime::get().abort(code);
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace m3ret::launcher;
  set_command_line(argc, argv);
  CLI::App app{
      "m3ret: pretrain one self-supervised ViT over hybrid medical data and evaluate it "
      "by zero-shot retrieval"};
  app.set_version_flag("--version", std::string("m3ret ") + m3ret::git_revision());
  app.require_subcommand(1);
  add_synth_verb(app);
  add_import_verb(app);
  add_split_verb(app);
  add_shard_verb(app);
  add_train_verb(app);
  add_embed_verb(app);
  add_eval_verb(app);
  add_index_verb(app);
  add_search_verb(app);
  add_demo_verb(app);
  add_model_verb(app);
  add_export_verb(app);
  add_orchestrate_verb(app);
  add_status_verb(app);
  add_config_verb(app);

  // Exit codes: 0 success; 2 a usage error (a flag, a config file or key, a --set value);
  // 1 any other failure (docs/pipeline.md). Either way one line on stderr.
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    return fail(e, 2);
  } catch (const m3ret::config::Error& e) {
    return fail(e, 2);
  } catch (const std::exception& e) {
    return fail(e, 1);
  }
  m3ret::log::flush();
  return 0;
}
