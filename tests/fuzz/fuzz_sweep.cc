// Sweep files (launcher/orchestrator/sweep.h) as `m3ret orchestrate --sweep` reads them:
// load_sweep with every run's overrides checked against the root configuration
// (launcher/app_config.h), the base config being the shipped demo config beside the sweep file
// (`base_config = "../demo.toml"`, as in configs/sweeps/). The input is the sweep file.
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "launcher/app_config.h"
#include "launcher/orchestrator/sweep.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::ofstream(m3ret::fuzz::scratch_dir() / "demo.toml")
      << m3ret::launcher::embedded_demo_config();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = m3ret::fuzz::write_input("sweeps/sweep.toml", data, size);
  m3ret::fuzz::refuse_only_with_error([&] {
    const auto sweep = m3ret::orchestrator::load_sweep(
        path, [](const std::filesystem::path& base, const std::vector<std::string>& sets) {
          m3ret::launcher::load_app_config(base, sets);
        });
    (void)sweep;
  });
  return 0;
}
