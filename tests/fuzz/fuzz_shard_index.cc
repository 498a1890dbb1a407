// A shard folder's index.json (sharding/shard_set.h): opening a shard set whose index is any
// bytes (the shards it names do not exist) lists its samples or is an m3ret::Error.
#include <memory>

#include "fuzz_util.h"
#include "sharding/shard_set.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = m3ret::fuzz::write_input("shards/index.json", data, size);
  m3ret::fuzz::refuse_only_with_error([&] {
    auto set = m3ret::sharding::ShardSet::open(path.parent_path());
    (void)set;
  });
  return 0;
}
