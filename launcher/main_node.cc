// m3ret-node: the verbs a compute node runs on shards (train, embed, eval, index, export, model,
// config), without the verbs that read raw images, videos and volumes (synth, import, shard,
// search, demo) and so without ITK, GDCM and FFmpeg (docs/training.md, "The compute-node binary").
#include <cstdio>
#include <string>

#include "launcher/cli_main.h"
#include "launcher/verbs.h"

int main(int argc, char** argv) {
  using namespace m3ret::launcher;
  if (argc > 1) {
    const std::string verb = argv[1];
    for (const char* other :
         {"synth", "import", "split", "shard", "search", "demo", "orchestrate", "status"}) {
      if (verb != other) continue;
      std::fprintf(stderr,
                   "m3ret: usage error: '%s' is a verb of the full m3ret binary; m3ret-node runs "
                   "train, embed, eval, index, export, model and config\n",
                   other);
      return 2;
    }
  }
  return run_cli(argc, argv, "m3ret-node",
                 "m3ret-node: the compute-node m3ret (train, embed, eval, index, export, model, "
                 "config) for shards made elsewhere by `m3ret shard`; the other verbs are in the "
                 "full `m3ret` binary",
                 {add_train_verb, add_embed_verb, add_eval_verb, add_index_verb, add_model_verb,
                  add_export_verb, add_config_verb});
}
