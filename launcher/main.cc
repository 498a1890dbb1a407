// m3ret: one binary, one verb per stage. See `m3ret --help` and docs/.
#include "launcher/cli_main.h"
#include "launcher/verbs.h"

int main(int argc, char** argv) {
  using namespace m3ret::launcher;
  return run_cli(
      argc, argv, "m3ret",
      "m3ret: pretrain one self-supervised ViT over hybrid medical data and evaluate it "
      "by zero-shot retrieval",
      {add_synth_verb, add_import_verb, add_split_verb, add_shard_verb, add_train_verb,
       add_embed_verb, add_eval_verb, add_index_verb, add_search_verb, add_demo_verb,
       add_model_verb, add_export_verb, add_orchestrate_verb, add_status_verb, add_config_verb});
}
