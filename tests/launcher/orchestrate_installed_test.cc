// `m3ret orchestrate` installed by `cmake --install` into a temporary prefix:
// the installed binary finds the plotting script installed beside it
// (share/m3ret/python/m3ret_plots.py), its charts are drawn, and the static
// status page stays after it exits. Jobs are tests/integration/fake_m3ret.sh
// (through --job-binary) under an mpiexec that carries options.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "launcher/process.h"
#include "test_util.h"

namespace m3ret {
namespace {

namespace fs = std::filesystem;

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(OrchestrateInstalled, FindsTheInstalledPlotScriptAndLeavesTheStatusPage) {
  if (launcher::run_capture({"/usr/bin/python3", "-c", "import matplotlib"}).status != 0)
    GTEST_SKIP() << "/usr/bin/python3 has no matplotlib (Debian: python3-matplotlib)";
  testing::TempDir dir("orchinst");
  const fs::path d = dir.path(), prefix = d / "prefix";
  const fs::path build = testing::m3ret_binary().parent_path();
  auto r =
      launcher::run_capture({"cmake", "--install", build.string(), "--prefix", prefix.string()});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const fs::path script = prefix / "share/m3ret/python/m3ret_plots.py";
  ASSERT_TRUE(fs::is_regular_file(script)) << r.out;
  // Mark the installed copy, so that the source tree's script cannot pass.
  std::ofstream(script, std::ios::app)
      << "\nopen(os.path.join(sys.argv[2], 'drawn-by-installed-script'), 'w').close()\n";

  std::ofstream(d / "base.toml") << "[train]\nmax_steps = 3\ncheckpoint_every = 1\n";
  std::ofstream(d / "sweep.toml")
      << "format = \"m3ret-sweep/1\"\n[sweep]\nname = \"inst\"\nbase_config = \"base.toml\"\n"
      << "work_dir = \"" << (d / "work").string() << "\"\nmax_retries = 1\n"
      << "[axes]\n\"train.seed\" = [1, 2]\n"
      << "[local]\nmax_parallel = 2\nmpiexec = \"mpiexec --mca btl tcp,self\"\n";
  setenv("FAKE_M3RET_LOG", (d / "invocations.log").c_str(), 1);
  unsetenv("M3RET_PLOT_PYTHON");
  r = launcher::run_capture({(prefix / "bin/m3ret").string(), "orchestrate", "--sweep",
                             (d / "sweep.toml").string(), "--backend", "local", "--no-server",
                             "--poll", "0.1", "--job-binary",
                             (testing::source_dir() / "tests/integration/fake_m3ret.sh").string()});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const fs::path report = d / "work/report";
  EXPECT_TRUE(fs::exists(report / "drawn-by-installed-script")) << r.err;
  const auto plots = nlohmann::json::parse(read(report / "plots.json"));
  EXPECT_EQ(plots["skipped"], "") << plots.dump();
  EXPECT_EQ(plots["files"], nlohmann::json({"recall_vs_step.png"})) << "only the seeds vary";
  EXPECT_EQ(read(report / "recall_vs_step.png").substr(0, 8), "\x89PNG\r\n\x1a\n");
  const auto page = read(report / "status.html");
  EXPECT_NE(page.find("<th>train.seed</th>"), std::string::npos) << page;
  EXPECT_NE(page.find("<img src=\"recall_vs_step.png\""), std::string::npos) << page;
  // The shard job's mpiexec options reached its command line.
  bool found = false;
  for (const auto& e : fs::directory_iterator(d / "work/jobs"))
    if (e.path().filename().string().find("shard") != std::string::npos)
      found =
          read(e.path() / "command.sh").find("mpiexec --mca btl tcp,self --bind-to none -n 1") !=
          std::string::npos;
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace m3ret
