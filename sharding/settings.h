// The sharding part of the root configuration: [shard] and [loader].
#pragma once

#include "sharding/loader.h"
#include "sharding/sharder.h"

namespace m3ret::sharding {

struct Settings {
  ShardConfig shard;
  LoaderConfig loader;

  template <class V>
  void visit(V& v) {
    v.section("shard", shard);
    v.section("loader", loader);
  }
};

}  // namespace m3ret::sharding
