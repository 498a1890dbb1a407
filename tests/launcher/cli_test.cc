// The m3ret binary's command line: verbs, --help, config errors, exit codes.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "launcher/app_config.h"
#include "launcher/process.h"
#include "test_util.h"

namespace m3ret {
namespace {

using testing::m3ret_binary;
using testing::run_command;

std::string bin() { return m3ret_binary().string(); }

TEST(Cli, EveryVerbHasHelp) {
  for (const char* verb : {"synth", "shard", "train", "embed", "eval", "demo", "config"}) {
    std::string out;
    EXPECT_EQ(run_command(bin() + " " + verb + " --help", &out), 0) << verb;
    EXPECT_NE(out.find("--set"), std::string::npos) << verb << ": " << out;
  }
  std::string out;
  EXPECT_EQ(run_command(bin() + " --help", &out), 0);
  for (const char* verb : {"synth", "shard", "train", "embed", "eval", "demo"}) {
    EXPECT_NE(out.find(verb), std::string::npos) << out;
  }
}

TEST(Cli, NoVerbIsAnError) {
  std::string out;
  EXPECT_NE(run_command(bin(), &out), 0);
  EXPECT_NE(run_command(bin() + " frobnicate", &out), 0);
}

TEST(Cli, ConfigVerbAppliesOverrides) {
  std::string out;
  ASSERT_EQ(run_command(bin() + " config --set train.max_steps=77 --set model.preset=small", &out),
            0)
      << out;
  EXPECT_NE(out.find("max_steps = 77"), std::string::npos) << out;
  EXPECT_NE(out.find("preset = 'small'"), std::string::npos) << out;
}

TEST(Cli, UnknownKeyFailsWithOneLineNamingIt) {
  std::string out;
  EXPECT_EQ(run_command(bin() + " config --set train.max_stepz=3", &out), 2);  // a usage error
  EXPECT_NE(out.find("m3ret: usage error: unknown config key 'train.max_stepz'"), std::string::npos)
      << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

TEST(Cli, BadValueInFileNamesFileAndLine) {
  testing::TempDir dir("cli");
  auto f = dir / "bad.toml";
  std::ofstream(f) << "[train]\nmax_steps = 10\nglobal_batch_size = -4\n";
  std::string out;
  EXPECT_EQ(run_command(bin() + " config --config " + f.string(), &out), 2);  // a usage error
  EXPECT_NE(out.find("train.global_batch_size"), std::string::npos) << out;
  EXPECT_NE(out.find(f.string() + ":3"), std::string::npos) << out;
}

TEST(Cli, EmbeddedDemoConfigIsTheShippedFile) {
  // The binary's embedded demo config equals configs/demo.toml and resolves.
  std::ifstream in(testing::source_dir() / "configs" / "demo.toml");
  std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(file, launcher::embedded_demo_config());
  auto cfg = launcher::load_app_config(std::nullopt, {}, /*use_embedded_demo=*/true);
  EXPECT_EQ(cfg.trainer.model.preset, "tiny");
  EXPECT_EQ(cfg.demo.ranks, 2);
}

TEST(Cli, EveryShippedConfigLoads) {
  for (auto& e : std::filesystem::recursive_directory_iterator(testing::source_dir() / "configs")) {
    if (e.path().extension() != ".toml" || e.path().string().find("sweeps") != std::string::npos) {
      continue;
    }
    EXPECT_NO_THROW(launcher::load_app_config(e.path(), {})) << e.path();
  }
}

TEST(Cli, LearningBenchmarkConfigAndDemoKeys) {
  auto cfg = launcher::load_app_config(testing::source_dir() / "configs" / "learning.toml", {});
  EXPECT_EQ(cfg.trainer.train.modalities,
            (std::vector<std::string>{"xray", "ultrasound", "endoscopy", "ct"}));  // MRI unseen
  EXPECT_EQ(cfg.data.synth.classes.size(), 6u);
  EXPECT_TRUE(cfg.trainer.simdino.gamma.is_auto());
  // The global-crop area the benchmark's figures were measured with (the framework's default
  // is 0.4; docs/performance.md "Global crop scale").
  EXPECT_EQ(cfg.trainer.simdino.global_crop_scale, (std::vector<double>{0.6, 1.0}));
  EXPECT_EQ(cfg.demo.variants, (std::vector<std::string>{"pooling", "student"}));
  try {
    launcher::load_app_config(std::nullopt, {"demo.variants=[\"teacher\"]"});
    ADD_FAILURE() << "no error";
  } catch (const config::Error& e) {
    EXPECT_NE(std::string(e.what()).find("demo.variants"), std::string::npos) << e.what();
  }
}

// configs/learning-texture.toml extends learning.toml (`base`) and is, key for key, the
// texture benchmark that docs/data.md spells out as learning.toml with five overrides.
TEST(Cli, TextureBenchmarkIsLearningTomlWithTheDocumentedOverrides) {
  const auto configs = testing::source_dir() / "configs";
  auto texture = launcher::load_app_config(configs / "learning-texture.toml", {});
  auto spelled = launcher::load_app_config(
      configs / "learning.toml",
      {"synth.classes=[\"stripes\",\"blobs\",\"checker\",\"rings\",\"spokes\",\"dots\"]",
       "synth.pattern_tilt=[0,360]", "simdino.rotation=180", "synth.pattern_warp=1.0",
       "synth.lesion_shape=cylinder"});
  EXPECT_EQ(launcher::resolved_toml(texture), launcher::resolved_toml(spelled));
  auto learning = launcher::load_app_config(configs / "learning.toml", {});
  EXPECT_NE(launcher::resolved_toml(texture), launcher::resolved_toml(learning));
  EXPECT_EQ(texture.data.synth.lesion_shape, "cylinder");
  EXPECT_EQ(texture.trainer.train.max_steps, learning.trainer.train.max_steps);  // from the base
  // --set still wins over both files.
  auto set = launcher::load_app_config(configs / "learning-texture.toml",
                                       {"synth.pattern_warp=0.5", "train.max_steps=9000"});
  EXPECT_EQ(set.data.synth.pattern_warp, 0.5);
  EXPECT_EQ(set.trainer.train.max_steps, 9000);
}

TEST(Cli, DemoRefusesAVerdictKThatIsNotEvaluated) {
  testing::TempDir dir("cli");
  std::string out;
  EXPECT_NE(
      run_command(bin() + " demo --out " + (dir / "d").string() + " --set demo.verdict_k=3", &out),
      0);
  EXPECT_NE(out.find("demo.verdict_k"), std::string::npos) << out;
  EXPECT_NE(out.find("eval.ks"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir / "d"));  // nothing started
}

TEST(Cli, ResolvedConfigRecordsGitRevision) {
  testing::TempDir dir("cli");
  auto cfg = launcher::load_app_config(std::nullopt, {"train.max_steps=5"});
  launcher::write_run_record(dir.path(), cfg, "m3ret train ...", 2);
  std::ifstream in(dir / "config.toml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("# git revision: "), std::string::npos);
  EXPECT_NE(text.find("max_steps = 5"), std::string::npos);
  // The recorded config is itself a valid config that reproduces the run.
  auto back = launcher::load_app_config(dir / "config.toml", {});
  EXPECT_EQ(back.trainer.train.max_steps, 5);
  EXPECT_TRUE(std::filesystem::exists(dir / "run.json"));
}

TEST(Cli, DemoRefusesAForeignNonEmptyFolder) {
  testing::TempDir dir("cli");
  std::ofstream(dir / "precious.txt") << "keep me";
  std::string out;
  EXPECT_EQ(run_command(bin() + " demo --out " + dir.path().string(), &out), 1);
  EXPECT_NE(out.find("not empty"), std::string::npos) << out;
  EXPECT_TRUE(std::filesystem::exists(dir / "precious.txt"));
}

// The demo's overall progress: a line as each stage starts (its number of all,
// the time left, the time elapsed) and plain lines when stderr is not a
// terminal. Every mpiexec stage here is /bin/true, so the demo runs synth, then
// "runs" each stage up to eval, which finds no embeddings.
TEST(Cli, DemoShowsItsOverallProgressAsEachStageStarts) {
  testing::TempDir dir("cli");
  std::string out;
  EXPECT_EQ(run_command(bin() + " demo --out " + (dir / "d").string() +
                            " --set synth.patients_per_class=1 --set 'demo.mpiexec=\"/bin/true\"'",
                        &out),
            1);
  size_t at = 0;
  for (const char* stage : {"1/8: synth ETA ? elapsed ", "2/8: shard ETA ", "3/8: train ETA ",
                            "4/8: embed (trained) ETA ", "8/8: eval ETA "}) {
    at = out.find(std::string("demo stage ") + stage, at);
    ASSERT_NE(at, std::string::npos) << stage << "\n" << out;
  }
  EXPECT_EQ(out.find("ETA ?", out.find("2/8: shard")), std::string::npos)
      << "once synth is done, the time left is estimated\n"
      << out;
  EXPECT_EQ(out.find("demo ["), std::string::npos) << "no bar when not on a terminal\n" << out;
  EXPECT_NE(out.find("embeddings-trained.h5"), std::string::npos) << out;
}

// synth writes into a new or empty folder, or its own (OUT/synth.json); a
// folder holding other files is refused, naming it and both choices, unless
// --overwrite, which writes the dataset among the files and keeps them.
TEST(Cli, SynthRefusesAFolderItDidNotWriteUnlessOverwrite) {
  testing::TempDir dir("cli");
  const std::string synth = bin() + " synth --set 'synth.modalities=[\"xray\"]'" +
                            " --set synth.patients_per_class=1 --out " + dir.path().string();
  std::ofstream(dir / "precious.txt") << "keep me";
  std::string out;
  EXPECT_EQ(run_command(synth, &out), 1);
  EXPECT_NE(out.find("synth: " + dir.path().string() +
                     " already holds files that synth did not write (precious.txt); start over "
                     "in a new --out or with --overwrite"),
            std::string::npos)
      << out;
  EXPECT_FALSE(std::filesystem::exists(dir / "manifest.csv"));
  ASSERT_EQ(run_command(synth + " --overwrite", &out), 0) << out;
  EXPECT_TRUE(std::filesystem::exists(dir / "manifest.csv"));
  EXPECT_TRUE(std::filesystem::exists(dir / "precious.txt"));
  EXPECT_EQ(run_command(synth, &out), 0) << "its own folder, again: " << out;
}

TEST(Cli, MissingInputIsAClearError) {
  std::string out;
  EXPECT_NE(run_command(bin() + " shard --manifest /nonexistent/m.csv --out /tmp/x", &out), 0);
  EXPECT_NE(out.find("/nonexistent/m.csv"), std::string::npos) << out;
}

TEST(Cli, OrchestratePortOutsideItsRangeNamesTheFlagAndValue) {
  testing::TempDir dir("cli");
  std::ofstream(dir / "sweep.toml") << "[sweep]\nname = \"p\"\n";
  for (const char* port : {"70000", "-1", "65536"}) {
    std::string out;
    EXPECT_NE(run_command(bin() + " orchestrate --sweep " + (dir / "sweep.toml").string() +
                              " --port " + port,
                          &out),
              0);
    EXPECT_NE(out.find("--port"), std::string::npos) << out;
    EXPECT_NE(out.find(port), std::string::npos) << out;
    EXPECT_NE(out.find("65535"), std::string::npos) << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  }
}

// Every run's dataset weights are checked against the configuration before anything starts:
// a run whose weights do not match loader.datasets is refused, naming the file, the run and the
// keys, and no job is submitted.
TEST(Cli, OrchestrateChecksEveryRunsDatasetWeightsBeforeStarting) {
  testing::TempDir dir("cli");
  std::ofstream(dir / "base.toml") << "[train]\nmax_steps = 2\n";
  const auto sweep = dir / "sweep.toml";
  std::ofstream(sweep) << "[sweep]\nname = \"w\"\nbase_config = \"base.toml\"\nwork_dir = \""
                       << (dir / "work").string()
                       << "\"\nset = ['loader.datasets=[\"chestxray14\", \"chexpert\"]']\n"
                          "[axes]\n\"loader.dataset_weights\" = [\"[1, 3]\", \"[2]\"]\n";
  std::string out;
  EXPECT_NE(
      run_command(bin() + " orchestrate --no-server --sweep " + sweep.string() + " 2>&1", &out), 0);
  EXPECT_NE(out.find(sweep.string() + ": run r001-"), std::string::npos) << out;
  EXPECT_NE(out.find("config keys 'loader.datasets' (2 names) and 'loader.dataset_weights' (1 "
                     "weights) must have the same length"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("r000-"), std::string::npos) << "run r000 is a valid run: " << out;
  EXPECT_FALSE(std::filesystem::exists(dir / "work/jobs")) << "a job was submitted";
}

TEST(Process, ShellLineQuotes) {
  EXPECT_EQ(launcher::shell_line({"a", "b c", "it's"}), "a 'b c' 'it'\\''s'");
}

TEST(Process, ChildrenGetNoMpiVariablesAndNoDescriptorButTheirStdio) {
  setenv("OMPI_COMM_WORLD_RANK", "3", 1);
  int leaky = ::open("/dev/null", O_RDONLY);  // no close-on-exec
  ASSERT_GE(leaky, 3);
  auto r = launcher::run_capture({"sh", "-c", "env; echo fds; ls /proc/$$/fd; true"});
  ::close(leaky);
  unsetenv("OMPI_COMM_WORLD_RANK");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.find("OMPI_COMM_WORLD_RANK"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.substr(r.out.find("fds\n") + 4), "0\n1\n2\n") << r.out;
  // A descriptor passed on purpose arrives where it was asked to, alone.
  launcher::SpawnOptions o;
  o.keep_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  o.keep_fd_as = 9;
  o.env_defaults = {"M3RET_TEST_DEFAULT=1", "PATH=/nowhere"};  // PATH is set: kept as it is
  testing::TempDir dir("proc");
  int out = ::open((dir / "out").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  o.stdout_fd = out;
  pid_t pid =
      launcher::spawn({"sh", "-c", "ls /proc/$$/fd; echo $M3RET_TEST_DEFAULT; command -v ls"}, o);
  EXPECT_EQ(launcher::wait_exit(pid), 0);
  ::close(out);
  ::close(o.keep_fd);
  std::ifstream in(dir / "out");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.substr(0, text.find("1\n/")), "0\n1\n2\n9\n") << text;
  EXPECT_NE(text.find("1\n/"), std::string::npos) << text;
  EXPECT_EQ(launcher::run_capture({"/no/such/program"}).status, 127);
  EXPECT_THROW(launcher::spawn({"/no/such/program"}), Error);
}

// SpawnOptions::blocked_signals is the child's whole signal mask (SigBlk in
// /proc/PID/status: bit N-1 for signal N); a stand-in child keeps the MPI
// variables and the descriptors without close-on-exec.
TEST(Process, BlockedSignalsAreTheChildsMaskAndAStandInKeepsItsLaunchersWorld) {
  testing::TempDir dir("proc");
  auto run = [&](const launcher::SpawnOptions& base, const std::string& script) {
    launcher::SpawnOptions o = base;
    o.stdout_fd = ::open((dir / "out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const int rc = launcher::wait_exit(launcher::spawn({"sh", "-c", script}, o));
    ::close(o.stdout_fd);
    EXPECT_EQ(rc, 0);
    std::ifstream in(dir / "out");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  launcher::SpawnOptions o;
  o.blocked_signals = {SIGTERM, SIGINT};
  const uint64_t want = (1ull << (SIGTERM - 1)) | (1ull << (SIGINT - 1));
  const std::string mask = run(o, "grep SigBlk /proc/$$/status | cut -f2");
  EXPECT_EQ(std::stoull(mask, nullptr, 16), want) << mask;
  EXPECT_EQ(std::stoull(run({}, "grep SigBlk /proc/$$/status | cut -f2"), nullptr, 16), 0u);

  setenv("OMPI_MCA_btl", "self", 1);
  int leaky = ::open("/dev/null", O_RDONLY);  // no close-on-exec
  o.stand_in = true;
  const std::string world = run(o, "echo $OMPI_MCA_btl; ls /proc/$$/fd");
  o.stand_in = false;
  const std::string clean = run(o, "echo $OMPI_MCA_btl; ls /proc/$$/fd");
  ::close(leaky);
  unsetenv("OMPI_MCA_btl");
  EXPECT_EQ(world.rfind("self\n", 0), 0u) << world;
  EXPECT_NE(world.find("\n" + std::to_string(leaky) + "\n"), std::string::npos) << world;
  EXPECT_EQ(clean, "\n0\n1\n2\n") << clean;
}

}  // namespace
}  // namespace m3ret
