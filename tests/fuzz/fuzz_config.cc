// TOML configs and --set overrides (core/config.h) through the torch-free sections of the root
// configuration ([synth], [preprocess], [shard], [loader], [eval]): the input's first line is a
// `--set KEY=VALUE` override, the rest the config file.
#include <string>
#include <vector>

#include "core/config.h"
#include "data/settings.h"
#include "eval/settings.h"
#include "fuzz_util.h"
#include "sharding/settings.h"

namespace {
struct Root {
  m3ret::data::Settings data;
  m3ret::sharding::Settings sharding;
  m3ret::eval::Settings eval;
  template <class V>
  void visit(V& v) {
    data.visit(v);
    sharding.visit(v);
    eval.visit(v);
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto eol = text.find('\n');
  const std::string first = text.substr(0, eol);
  const std::string rest = eol == std::string::npos ? "" : text.substr(eol + 1);
  const auto path = m3ret::fuzz::write_input(
      "config.toml", reinterpret_cast<const uint8_t*>(rest.data()), rest.size());
  std::vector<std::string> overrides;
  if (first.find('=') != std::string::npos) overrides.push_back(first);
  m3ret::fuzz::refuse_only_with_error([&] {
    Root root = m3ret::config::load<Root>(path, overrides);
    (void)m3ret::config::to_toml(root);
  });
  return 0;
}
