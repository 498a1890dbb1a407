// The orchestrator without a scheduler: sweep expansion, the job state
// machine, the SQLite state, reconciliation after a crash, retries and
// preemptions (through a scripted fake backend), the local backend with real
// processes, the report, and the status server's answers to bad requests.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <set>
#include <thread>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <png.h>

#include "core/config.h"
#include "data/manifest.h"
#include "eval/report.h"
#include "launcher/orchestrator/http_server.h"
#include "launcher/orchestrator/orchestrator.h"
#include "launcher/orchestrator/report.h"
#include "launcher/orchestrator/session.h"
#include "launcher/orchestrator/status.h"
#include "launcher/process.h"
#include "orchestrator_fakes.h"
#include "test_util.h"

namespace m3ret {
namespace {

namespace fs = std::filesystem;
using namespace orchestrator;
using testing::FakeBackend;
using testing::TempDir;

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> plot_files(const nlohmann::json& data) {
  std::vector<std::string> files;
  for (const auto& p : data["plots"]) files.push_back(p["file"]);
  return files;
}

const nlohmann::json& plot_named(const nlohmann::json& data, const std::string& file) {
  for (const auto& p : data["plots"])
    if (p["file"].get<std::string>() == file) return p;
  throw std::runtime_error("no plot " + file + " in " + data.dump());
}

std::string http(uint16_t port, const std::string& raw) {
  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  boost::system::error_code ec;
  asio::write(s, asio::buffer(raw), ec);  // the server may answer and close before reading it all
  s.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  std::string out;
  char buf[4096];
  for (;;) {
    size_t n = s.read_some(asio::buffer(buf), ec);
    out.append(buf, n);
    if (ec) break;
  }
  return out;
}

int status_of(const std::string& response) {
  return response.size() > 12 ? std::stoi(response.substr(9, 3)) : -1;
}

// A sweep file in `dir` over a base config in the same folder.
fs::path write_sweep(const fs::path& dir, const std::string& body,
                     const std::string& sweep_extra = "") {
  std::ofstream(dir / "base.toml") << "[train]\nmax_steps = 20\n";
  auto f = dir / "sweep.toml";
  std::ofstream(f) << "[sweep]\nname = \"t\"\nbase_config = \"base.toml\"\nwork_dir = \"" +
                          (dir / "work").string() + "\"\nmax_retries = 1\n" + sweep_extra + "\n" +
                          body;
  return f;
}

TEST(Sweep, ExpandsTheCartesianProductInKeyOrder) {
  TempDir dir("sweep");
  auto f =
      write_sweep(dir.path(),
                  "[axes]\n\"model.preset\" = [\"tiny\", \"small\"]\ndata_fraction = [0.5, 1.0]\n"
                  "\"train.seed\" = [1, 2, 3]\n",
                  "set = [\"train.max_steps=7\"]");
  Sweep s = load_sweep(f);
  ASSERT_EQ(s.runs.size(), 12u);
  EXPECT_EQ(s.runs[0].name, "r000-frac=0.5-preset=tiny-seed=1");
  EXPECT_EQ(s.runs[11].name, "r011-frac=1.0-preset=small-seed=3");
  std::vector<std::string> want = {"train.max_steps=7", "model.preset=small", "train.seed=2"};
  EXPECT_EQ(s.runs[10].sets, want);  // base set first, data_fraction is not a config key
  EXPECT_DOUBLE_EQ(s.runs[10].data_fraction, 1.0);
  EXPECT_DOUBLE_EQ(s.runs[0].data_fraction, 0.5);
  EXPECT_EQ(s.runs[4].params.at("train.seed"), "2");
  std::set<std::string> names;
  for (const auto& r : s.runs) names.insert(r.name);
  EXPECT_EQ(names.size(), 12u);
  EXPECT_EQ(s.base_config, fs::weakly_canonical(dir / "base.toml"));
}

// Per-dataset mixing weights are a sweep axis: lists given as strings reach `--set` as written,
// beside the datasets they weigh in sweep.set (docs/loading.md).
TEST(Sweep, DatasetWeightsAreAnAxisOfListsPassedAsWritten) {
  TempDir dir("sweep");
  Sweep s = load_sweep(
      write_sweep(dir.path(), "[axes]\n\"loader.dataset_weights\" = [\"[1, 1]\", \"[1, 3]\"]\n",
                  "set = ['loader.datasets=[\"chestxray14\", \"chexpert\"]']"));
  ASSERT_EQ(s.runs.size(), 2u);
  const std::vector<std::string> want = {"loader.datasets=[\"chestxray14\", \"chexpert\"]",
                                         "loader.dataset_weights=[1, 3]"};
  EXPECT_EQ(s.runs[1].sets, want);
  EXPECT_EQ(s.runs[0].sets.back(), "loader.dataset_weights=[1, 1]");
  EXPECT_EQ(s.runs[1].params.at("loader.dataset_weights"), "[1, 3]");
}

TEST(Sweep, NoAxesIsOneRun) {
  TempDir dir("sweep");
  Sweep s = load_sweep(write_sweep(dir.path(), ""));
  ASSERT_EQ(s.runs.size(), 1u);
  EXPECT_EQ(s.runs[0].name, "r000");
}

TEST(Sweep, BadEntriesNameTheFileAndKey) {
  TempDir dir("sweep");
  auto expect_error = [&](const std::string& body, const std::string& extra,
                          const std::string& needle) {
    auto f = write_sweep(dir.path(), body, extra);
    try {
      load_sweep(f);
      ADD_FAILURE() << "no error for: " << body << extra;
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(f.string()), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  };
  expect_error("[axes]\ndata_fraction = [0.0, 1.0]\n", "", "axes.data_fraction");
  expect_error("[axes]\ndata_fraction = [1.5]\n", "", "outside (0, 1]");
  expect_error("[axes]\n\"model.preset\" = []\n", "", "axes.model.preset");
  expect_error("[axes]\n\"shard.samples_per_shard\" = [8, 16]\n", "", "sweep.set");
  expect_error("", "colour = 3", "sweep.colour");
  expect_error("[local]\nmax_parallel = 0\n", "", "local.max_parallel");
  expect_error("[sweep2]\n", "", "unknown config section 'sweep2'");
  // Typed, range-checked keys (core/config.h), with the file's line and column.
  expect_error("", "preempted_exit_code = 300", "sweep.preempted_exit_code' = 300 is out of range");
  expect_error("", "ranks = \"two\"", "sweep.ranks' must be");
  expect_error("[slurm]\ngpus_per_node = -1\n", "", "slurm.gpus_per_node' = -1 is out of range");
  expect_error("[slurm]\ncpus_per_task = 0\n", "", "slurm.cpus_per_task");
  expect_error("", "format = \"m3ret-sweep/9\"", "format");
  expect_error("", "ranks = 1.5", "sweep.ranks");
  expect_error("[local]\nmax_parallel = 0\n", "", (dir / "sweep.toml").string() + ":8:");  // line 8
  // A path the system refuses (a name beyond NAME_MAX) names its key, not a filesystem_error.
  expect_error("", "manifest = \"" + std::string(300, 'm') + "/m.csv\"",
               "sweep key 'sweep.manifest'");
  // `base` (docs/configuration.md) is for config files: a sweep file that extends another would
  // lose the other's axes, so it is refused, naming the key and line.
  write_sweep(dir.path(), "[axes]\n\"train.lr\" = [0.001]\n");
  std::ofstream(dir / "extends.toml") << "base = \"sweep.toml\"\n[axes]\n\"train.seed\" = [1, 2]\n";
  try {
    load_sweep(dir / "extends.toml");
    ADD_FAILURE() << "a sweep file with a base was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "extends.toml").string() + ":1: sweep key 'base'"),
              std::string::npos)
        << e.what();
  }
  // Every run's overrides go through the caller's config check.
  auto f = write_sweep(dir.path(), "[axes]\n\"train.max_stepz\" = [1]\n");
  try {
    load_sweep(f, [](const fs::path&, const std::vector<std::string>& sets) {
      for (const auto& s : sets)
        if (s.rfind("train.max_stepz", 0) == 0) throw Error("unknown config key 'train.max_stepz'");
    });
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("run r000: unknown config key 'train.max_stepz'"),
              std::string::npos)
        << e.what();
  }
}

TEST(Sweep, MpiexecIsACommandWithOptionsAndAMalformedOneNamesTheKey) {
  EXPECT_EQ(split_command("mpiexec --mca btl tcp,self  -x 'A=b c' -x \"D=e\\\"f\"", "k"),
            std::vector<std::string>(
                {"mpiexec", "--mca", "btl", "tcp,self", "-x", "A=b c", "-x", "D=e\"f"}));
  TempDir dir("sweep");
  auto sweep =
      load_sweep(write_sweep(dir.path(),
                             "[local]\nmpiexec = \"mpiexec --mca btl tcp,self --bind-to none\"\n"
                             "[slurm]\nmpiexec = \"mpirun -x 'OMP_NUM_THREADS=2'\"\n"));
  EXPECT_EQ(sweep.local.mpiexec, "mpiexec --mca btl tcp,self --bind-to none");
  const std::map<std::string, std::string> bad = {
      {"mpiexec = \"mpiexec -x 'A=b\"", "an unterminated quote"},
      {"mpiexec = \"  \"", "no command"},
      {"mpiexec = 'mpiexec \\q'", "unknown escape"}};
  for (const auto& [line, why] : bad) {
    for (const char* section : {"local", "slurm"}) {
      const auto f = write_sweep(dir.path(), std::string("[") + section + "]\n" + line + "\n");
      try {
        load_sweep(f);
        ADD_FAILURE() << line << " was accepted";
      } catch (const config::Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(std::string("sweep key '") + section + ".mpiexec'"), std::string::npos)
            << msg;
        EXPECT_NE(msg.find("sweep.toml:"), std::string::npos) << msg;
        EXPECT_NE(msg.find(why), std::string::npos) << msg;
      }
    }
  }
}

TEST(Sweep, ShippedSweepsLoad) {
  for (const char* name : {"tiny.toml", "scaling.toml"}) {
    Sweep s = load_sweep(testing::source_dir() / "configs" / "sweeps" / name);
    EXPECT_GE(s.runs.size(), 2u) << name;
  }
}

TEST(Sweep, DataFractionKeepsTrainRowsPerModalityAndNests) {
  TempDir dir("frac");
  std::vector<data::ManifestRow> rows;
  for (int i = 0; i < 10; ++i)
    rows.push_back(
        {dir / fmt::format("x{}.png", i), "xray", {"a"}, fmt::format("p{}", i), "train"});
  for (int i = 0; i < 4; ++i)
    rows.push_back({dir / fmt::format("c{}.nii", i), "ct", {"b"}, fmt::format("q{}", i), "train"});
  for (int i = 0; i < 3; ++i)
    rows.push_back({dir / fmt::format("t{}.png", i), "xray", {"a"}, fmt::format("t{}", i), "test"});
  data::write_manifest(dir / "m.csv", rows);
  EXPECT_EQ(write_manifest_fraction(dir / "m.csv", 0.5, dir / "half.csv"), 5u + 2u + 3u);
  EXPECT_EQ(write_manifest_fraction(dir / "m.csv", 0.3, dir / "third.csv"), 3u + 2u + 3u);
  auto half = data::read_manifest(dir / "half.csv");
  auto third = data::read_manifest(dir / "third.csv");
  std::set<fs::path> h;
  for (auto& r : half) h.insert(r.path);
  for (auto& r : third) EXPECT_TRUE(h.count(r.path)) << r.path;  // smaller fraction is a subset
  int test_rows = 0;
  for (auto& r : half) test_rows += r.split == "test";
  EXPECT_EQ(test_rows, 3);
}

TEST(JobStateMachine, OnlyForwardTransitions) {
  EXPECT_TRUE(transition_allowed(JobState::kIntent, JobState::kSubmitted));
  EXPECT_TRUE(transition_allowed(JobState::kSubmitted, JobState::kRunning));
  EXPECT_TRUE(transition_allowed(JobState::kRunning, JobState::kPreempted));
  EXPECT_TRUE(transition_allowed(JobState::kSubmitted, JobState::kSucceeded));
  EXPECT_FALSE(transition_allowed(JobState::kIntent, JobState::kRunning));
  EXPECT_FALSE(transition_allowed(JobState::kSucceeded, JobState::kRunning));
  EXPECT_FALSE(transition_allowed(JobState::kFailed, JobState::kSubmitted));
  EXPECT_FALSE(transition_allowed(JobState::kRunning, JobState::kSubmitted));

  TempDir dir("state");
  State st(dir / "s.db");
  JobRow j;
  j.name = "a";
  j.run = "r";
  int64_t id = st.add_job(j);
  EXPECT_EQ(st.job(id)->state, JobState::kIntent);
  EXPECT_THROW(st.add_job(j), Error);  // names are unique
  st.transition(id, JobState::kSubmitted, "", std::string("77"));
  st.transition(id, JobState::kSucceeded, "done", std::nullopt, 0);
  try {
    st.transition(id, JobState::kRunning, "");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("illegal transition succeeded -> running"),
              std::string::npos);
  }
  auto row = st.job_by_name("a");
  EXPECT_EQ(row->backend_id, "77");
  EXPECT_EQ(row->exit_code, 0);
  // The history is in the events table, and survives reopening.
  State again(dir / "s.db", true);
  int transitions = 0;
  for (const auto& e : again.events()) transitions += e.job == "a";
  EXPECT_EQ(transitions, 3);  // intent, submitted, succeeded
}

TEST(StateDb, RefusesAForeignFile) {
  TempDir dir("state");
  std::ofstream(dir / "x.db")
      << "not sqlite at all, just text that is long enough to be a header....";
  EXPECT_THROW(State(dir / "x.db"), Error);
  EXPECT_THROW(State(dir / "missing.db", true), Error);
}

struct Rig {
  explicit Rig(const fs::path& dir, const std::string& axes, const std::string& extra = "")
      : sweep(load_sweep(write_sweep(dir, axes, extra))) {}
  Sweep sweep;
  FakeBackend backend;
  // Steps until done (or a bound), with a fresh Orchestrator over `db`.
  void run(const fs::path& db, int max_steps = 200, int stop_after = -1) {
    State st(db);
    Orchestrator o(sweep, st, backend, {});
    o.reconcile();
    for (int i = 0; i < max_steps; ++i) {
      if (i == stop_after) return;  // "kill -9": nothing is flushed beyond what State committed
      if (o.step()) return;
    }
    FAIL() << "sweep did not finish";
  }
};

TEST(Orchestrator, RunsEverySweepPointAndEvaluatesEveryCheckpointOnce) {
  TempDir dir("orch");
  Rig rig(dir.path(), "[axes]\n\"model.preset\" = [\"tiny\", \"small\"]\ndata_fraction = [1.0]\n");
  rig.backend.max_parallel_ = 2;
  rig.run(dir / "s.db");
  State st(dir / "s.db");
  for (const auto& r : st.runs()) EXPECT_EQ(r.state, "succeeded") << r.name;
  // data, shard (one per fraction, shared), two trains, 2 x 2 evals.
  EXPECT_EQ(rig.backend.submitted.size(), 1u + 1u + 2u + 4u);
  for (const auto& n : rig.backend.submitted) EXPECT_EQ(rig.backend.count(n), 1) << n;
  EXPECT_LE(rig.backend.max_running_seen, 2);
  for (const auto& r : st.runs()) {
    auto cks = st.checkpoints(r.name);
    ASSERT_EQ(cks.size(), 2u);
    for (auto& [step, path] : cks) {
      int rows = 0;
      for (auto& e : st.evaluations(r.name)) rows += e.step == step && e.metric == "recall@1";
      EXPECT_EQ(rows, 3) << "xray, ct and mean at step " << step;
    }
  }
  // The report: CSV rows per (run, modality) at the last step, and three plots.
  auto csv = read(dir / "work/report/scaling.csv");
  EXPECT_NE(
      csv.find("run,state,data_fraction,model.preset,step,modality,queries,recall@1,recall@5"),
      std::string::npos)
      << csv;
  EXPECT_NE(csv.find("r001-preset=small,succeeded,1.0,small,20,xray,8,0.0000,0.9000"),
            std::string::npos)
      << csv;
  // Only the swept axis (model.preset; data_fraction has one value) and the steps are plotted.
  auto data = nlohmann::json::parse(read(dir / "work/report/plot_data.json"));
  EXPECT_EQ(plot_files(data),
            std::vector<std::string>({"recall_vs_model_size.png", "recall_vs_step.png"}));
  EXPECT_EQ(plot_named(data, "recall_vs_step.png")["series"].size(), 2u) << "one line per run";
  EXPECT_NE(read(dir / "work/report/scaling.md").find("| r000-preset=tiny |"), std::string::npos);

  // The status page links each run's last evaluation report, which the server serves.
  HttpServer server(0, make_status_handler(st, nullptr, "t", (dir / "work/report").string()));
  auto get = [&](const std::string& path) {
    return http(server.port(), "GET " + path + " HTTP/1.1\r\nConnection: close\r\n\r\n");
  };
  const std::string link = "evals/r000-preset=tiny/step-000000020/report.json";
  EXPECT_NE(get("/").find("<a href=\"" + link + "\">"), std::string::npos) << get("/");
  auto r = get("/" + link);
  ASSERT_EQ(status_of(r), 200) << r;
  EXPECT_EQ(r.substr(r.find("\r\n\r\n") + 4), read(dir / "work" / link));
  EXPECT_EQ(status_of(get("/evals/r000-preset%3Dtiny/step-000000020/report.json")), 200)
      << "percent-decoded";
  EXPECT_EQ(status_of(get("/evals/nope/step-000000020/report.json")), 404);
  EXPECT_EQ(status_of(get("/evals/r000-preset=tiny/step-000000020/embeddings.h5")), 404);
  EXPECT_EQ(status_of(get("/evals/r000-preset=tiny/../../state.db")), 404);
  EXPECT_NE(read(dir / "work/report/status.html").find("<a href=\"../" + link + "\">"),
            std::string::npos);
}

// A swept model key: each run's parameter count comes from `M3RET model
// --config BASE --set ... --json` (asked once per run) and is the log x axis.
TEST(Orchestrator, ModelSizeChartUsesEachRunsParameterCountFromM3retModel) {
  TempDir dir("orch");
  Rig rig(dir.path(), "[axes]\n\"model.preset\" = [\"tiny\", \"small\"]\n");
  const fs::path fake = dir / "fake-m3ret";
  std::ofstream(fake)
      << "#!/bin/sh\necho \"$*\" >> '" << (dir / "model-calls").string() << "'\n"
      << "case \"$*\" in *model.preset=small*) echo '{\"encoder_params\": 21700000}' ;;\n"
      << "*) echo '{\"encoder_params\": 5500000}' ;; esac\n";
  fs::permissions(fake, fs::perms::owner_all);
  OrchestratorOptions opts;
  opts.model_info = fake;
  State st(dir / "s.db");
  Orchestrator o(rig.sweep, st, rig.backend, opts);
  for (int i = 0; i < 200 && !o.step(); ++i) {
  }
  const auto calls = read(dir / "model-calls");
  EXPECT_NE(calls.find("model --config " + (dir / "base.toml").string() +
                       " --set "
                       "model.preset=small --json"),
            std::string::npos)
      << calls;
  EXPECT_EQ(std::count(calls.begin(), calls.end(), '\n'), 2) << "once per run: " << calls;
  const auto data = nlohmann::json::parse(read(dir / "work/report/plot_data.json"));
  const auto& model = plot_named(data, "recall_vs_model_size.png");
  EXPECT_EQ(model["x_scale"], "log");
  EXPECT_EQ(model["x_ticks"], nlohmann::json::parse(R"([{"x":5500000.0,"label":"5.5M\ntiny"},
                                                        {"x":21700000.0,"label":"21.7M\nsmall"}])"));
}

TEST(Orchestrator, PreemptedTrainResumesWithoutUsingARetry) {
  TempDir dir("orch");
  Rig rig(dir.path(), "", "preempted_exit_code = 75");
  rig.backend.exit_codes["t-r000-train-a0"] = 75;
  rig.backend.exit_codes["t-r000-train-a1"] = 138;  // killed by SIGUSR1: also a preemption
  rig.run(dir / "s.db");
  State st(dir / "s.db");
  EXPECT_EQ(st.run("r000")->state, "succeeded");
  EXPECT_EQ(st.run("r000")->failures, 0);
  EXPECT_EQ(st.job_by_name("t-r000-train-a0")->state, JobState::kPreempted);
  EXPECT_EQ(st.job_by_name("t-r000-train-a1")->state, JobState::kPreempted);
  EXPECT_EQ(st.job_by_name("t-r000-train-a2")->state, JobState::kSucceeded);
  EXPECT_NE(st.job_by_name("t-r000-train-a2")->command.find("--resume auto"), std::string::npos);
  // 1 + 1 checkpoints from the preempted attempts, 2 from the last: all evaluated.
  EXPECT_EQ(st.checkpoints("r000").size(), 4u);
  for (auto& [step, path] : st.checkpoints("r000")) {
    EXPECT_EQ(st.job_by_name(fmt::format("t-r000-eval-{}-a0", step))->state, JobState::kSucceeded);
  }
}

TEST(Orchestrator, FailedTrainIsRetriedUpToTheLimitThenTheRunFails) {
  TempDir dir("orch");
  Rig rig(dir.path(), "[axes]\n\"train.seed\" = [1, 2]\n");  // max_retries = 1
  rig.backend.exit_codes["t-r000-seed=1-train-a0"] = 1;
  rig.backend.exit_codes["t-r000-seed=1-train-a1"] = 1;
  rig.backend.exit_codes["t-r001-seed=2-train-a0"] = 1;
  rig.backend.exit_codes["t-r001-seed=2-eval-10-a0"] = 2;  // evaluation retried too
  rig.run(dir / "s.db");
  State st(dir / "s.db");
  EXPECT_EQ(st.run("r000-seed=1")->state, "failed");
  EXPECT_EQ(st.run("r000-seed=1")->failures, 2);
  EXPECT_FALSE(st.job_by_name("t-r000-seed=1-train-a2"));
  EXPECT_EQ(st.job_by_name("t-r000-seed=1-train-a1")->exit_code, 1);
  EXPECT_EQ(st.run("r001-seed=2")->state, "succeeded");
  EXPECT_EQ(st.job_by_name("t-r001-seed=2-eval-10-a1")->state, JobState::kSucceeded);
  // Retry makes the failed run pending; its next train attempt resumes.
  rig.backend.exit_codes.erase("t-r000-seed=1-train-a2");
  {
    State st2(dir / "s.db");
    Orchestrator o(rig.sweep, st2, rig.backend, {});
    o.retry_run("r000-seed=1");
    EXPECT_THROW(o.retry_run("r001-seed=2"), Error);  // succeeded runs are not retried
    EXPECT_THROW(o.retry_run("nope"), Error);
  }
  rig.run(dir / "s.db");
  State st3(dir / "s.db");
  EXPECT_EQ(st3.run("r000-seed=1")->state, "succeeded");
  EXPECT_EQ(rig.backend.count("t-r000-seed=1-train-a2"), 1);
}

TEST(Orchestrator, KilledAtEveryStepNeitherLosesNorDuplicatesAJob) {
  // Restart the orchestrator (new process state: new State and Orchestrator
  // objects over the same database) after every single step.
  TempDir dir("orch");
  Rig rig(dir.path(), "[axes]\ndata_fraction = [0.5, 1.0]\n");
  rig.backend.exit_codes["t-r000-frac=0.5-train-a0"] = 75;
  for (int i = 0; i < 100; ++i) rig.run(dir / "s.db", 200, 1);
  State st(dir / "s.db");
  for (const auto& r : st.runs()) EXPECT_EQ(r.state, "succeeded") << r.name;
  for (const auto& n : rig.backend.submitted) EXPECT_EQ(rig.backend.count(n), 1) << n;
  EXPECT_EQ(st.jobs().size(), rig.backend.submitted.size());
}

TEST(Orchestrator, ReconcileFindsASubmissionMadeJustBeforeACrash) {
  TempDir dir("orch");
  Rig rig(dir.path(), "");
  {
    // The crash window: intent recorded, backend accepted, id not yet recorded.
    State st(dir / "s.db");
    Orchestrator o(rig.sweep, st, rig.backend, {});
    JobRow j;
    j.name = "t-data-a0";
    j.kind = JobKind::kData;
    j.command = "m3ret synth --out " + (dir / "work/data").string();
    j.job_dir = (dir / "work/jobs/t-data-a0").string();
    st.add_job(j);
    rig.backend.submit({j.name, j.kind, j.command, j.job_dir, {}, 1});
    // And one intent that never reached the backend.
    JobRow k = j;
    k.name = "orphan";
    k.job_dir = (dir / "work/jobs/orphan").string();
    st.add_job(k);
  }
  State st(dir / "s.db");
  Orchestrator o(rig.sweep, st, rig.backend, {});
  o.reconcile();
  EXPECT_EQ(st.job_by_name("t-data-a0")->state, JobState::kSubmitted);
  EXPECT_EQ(st.job_by_name("t-data-a0")->backend_id, "1000");
  EXPECT_EQ(rig.backend.count("t-data-a0"), 1);
  EXPECT_EQ(rig.backend.count("orphan"), 1);
  o.reconcile();  // idempotent
  EXPECT_EQ(rig.backend.submitted.size(), 2u);
}

TEST(Orchestrator, CancelStopsTheRunsJobs) {
  TempDir dir("orch");
  Rig rig(dir.path(), "[axes]\n\"train.seed\" = [1, 2]\n");
  rig.backend.polls_to_finish = 1000;  // nothing ends by itself
  State st(dir / "s.db");
  Orchestrator o(rig.sweep, st, rig.backend, {});
  for (int i = 0; i < 3; ++i) o.step();
  ASSERT_FALSE(st.jobs().empty());
  rig.backend.polls_to_finish = 2;
  for (int i = 0; i < 20; ++i) o.step();
  auto train = st.job_by_name("t-r000-seed=1-train-a0");
  ASSERT_TRUE(train);
  rig.backend.polls_to_finish = 1000;
  o.cancel_run("r000-seed=1");
  EXPECT_EQ(st.run("r000-seed=1")->state, "cancelled");
  for (const auto& j : st.jobs("r000-seed=1")) {
    EXPECT_TRUE(is_terminal(j.state)) << j.name;
  }
  EXPECT_THROW(o.cancel_run("nope"), Error);
}

TEST(Orchestrator, TrainWaitsOnItsShardJobThroughAfterokAndAFailedShardIsRetriedFirst) {
  TempDir dir("orch");
  Rig rig(dir.path(), "");  // one run, max_retries = 1
  rig.backend.dependencies = true;
  rig.backend.exit_codes["t-shard-frac-1-a0"] = 1;
  rig.run(dir / "s.db");
  State st(dir / "s.db");
  EXPECT_EQ(st.run("r000")->state, "succeeded");
  EXPECT_EQ(st.run("r000")->failures, 0);  // the shard's failure is not the train's
  auto shard0 = st.job_by_name("t-shard-frac-1-a0");
  auto shard1 = st.job_by_name("t-shard-frac-1-a1");
  auto train0 = st.job_by_name("t-r000-train-a0");
  auto train1 = st.job_by_name("t-r000-train-a1");
  ASSERT_TRUE(shard0 && shard1 && train0 && train1);
  EXPECT_EQ(shard0->state, JobState::kFailed);
  // Submitted at once, after_ok on the shard job that was still running...
  using Ids = std::vector<std::string>;
  EXPECT_EQ(rig.backend.jobs.at(train0->backend_id).req.after_ok, Ids{shard0->backend_id});
  // ... cancelled by the scheduler when it failed, and submitted again after the retried shard job.
  EXPECT_EQ(train0->state, JobState::kCancelled);
  EXPECT_EQ(train0->reason.rfind(kDependencyFailed, 0), 0u) << train0->reason;
  EXPECT_EQ(rig.backend.jobs.at(train1->backend_id).req.after_ok, Ids{shard1->backend_id});
  EXPECT_EQ(train1->state, JobState::kSucceeded);
  EXPECT_FALSE(st.job_by_name("t-r000-train-a2"));

  // A shard job that fails every time fails the run (its train never ran).
  TempDir dir2("orch");
  Rig rig2(dir2.path(), "");
  rig2.backend.dependencies = true;
  rig2.backend.exit_codes["t-shard-frac-1-a0"] = 1;
  rig2.backend.exit_codes["t-shard-frac-1-a1"] = 1;
  rig2.run(dir2 / "s.db");
  State st2(dir2 / "s.db");
  EXPECT_EQ(st2.run("r000")->state, "failed");
  for (const auto& j : st2.jobs("r000")) EXPECT_NE(j.state, JobState::kSucceeded) << j.name;
  EXPECT_FALSE(st2.job_by_name("t-shard-frac-1-a2"));
}

// Steps a fresh orchestrator (backend max_parallel 1) until the shard job is
// submitted, then records a train job's intent as a crash would leave it:
// never submitted.
void crash_with_an_unsubmitted_train_job(Rig& rig, const fs::path& db) {
  State st(db);
  Orchestrator o(rig.sweep, st, rig.backend, {});
  for (int i = 0; i < 20 && !st.job_by_name("t-shard-frac-1-a0"); ++i) o.step();
  ASSERT_TRUE(st.job_by_name("t-shard-frac-1-a0"));
  ASSERT_FALSE(st.job_by_name("t-r000-train-a0"));
  JobRow j;
  j.name = "t-r000-train-a0";
  j.run = "r000";
  j.kind = JobKind::kTrain;
  j.command = "m3ret train --run-dir " + st.run("r000")->run_dir + " --resume auto";
  j.job_dir = (db.parent_path() / "work/jobs" / j.name).string();
  st.add_job(j);
}

TEST(Orchestrator, ReconcileGivesAnUnsubmittedTrainJobItsShardDependencyAgain) {
  // The crash window for a train job submitted before its shards exist: the
  // intent is recorded, the backend never saw it. On restart it must be
  // submitted with after_ok on the shard job, not start on missing shards.
  TempDir dir("orch");
  Rig rig(dir.path(), "");
  rig.backend.dependencies = true;
  rig.backend.max_parallel_ = 1;  // the shard job fills the backend: the train waits
  auto db = dir / "s.db";
  crash_with_an_unsubmitted_train_job(rig, db);
  rig.backend.max_parallel_ = 4;
  {
    State st(db);
    Orchestrator o(rig.sweep, st, rig.backend, {});
    o.reconcile();
    auto train = st.job_by_name("t-r000-train-a0");
    ASSERT_EQ(train->state, JobState::kSubmitted);
    EXPECT_EQ(rig.backend.jobs.at(train->backend_id).req.after_ok,
              std::vector<std::string>{st.job_by_name("t-shard-frac-1-a0")->backend_id});
  }
  rig.run(db);
  State st(db);
  EXPECT_EQ(st.run("r000")->state, "succeeded");
  EXPECT_EQ(st.job_by_name("t-r000-train-a0")->state, JobState::kSucceeded);
  EXPECT_FALSE(st.job_by_name("t-r000-train-a1"));
  for (const auto& n : rig.backend.submitted) EXPECT_EQ(rig.backend.count(n), 1) << n;

  // Without dependencies (local), such an intent is dropped (cancelled as a
  // dependency failure) and the run submits a new attempt once shards exist.
  TempDir dir2("orch");
  Rig rig2(dir2.path(), "");
  rig2.backend.max_parallel_ = 1;
  auto db2 = dir2 / "s.db";
  crash_with_an_unsubmitted_train_job(rig2, db2);
  rig2.run(db2);
  State st2(db2);
  EXPECT_EQ(st2.run("r000")->state, "succeeded");
  EXPECT_EQ(st2.job_by_name("t-r000-train-a0")->state, JobState::kCancelled);
  EXPECT_EQ(rig2.backend.count("t-r000-train-a0"), 0);
  EXPECT_EQ(st2.job_by_name("t-r000-train-a1")->state, JobState::kSucceeded);
}

TEST(Orchestrator, ReadsRetrievalReportsAndRefusesOthers) {
  TempDir dir("orch");
  using testing::fake_report;
  std::ofstream(dir / "r.json") << eval::to_json(fake_report({{"xray", 10, 0.5, 0.9, 0.4},
                                                              {"ct", 4, 0.25, 0.75, 0.3}}))
                                       .dump();
  auto rows = read_evaluations(dir / "r.json", "run", 7);
  std::map<std::string, double> got;
  for (auto& e : rows) got[e.modality + "/" + e.metric] = e.value;
  EXPECT_DOUBLE_EQ(got["mean/recall@1"], 0.375);
  EXPECT_DOUBLE_EQ(got["mean/map@5"], 0.35);
  EXPECT_DOUBLE_EQ(got["xray/queries"], 10);
  EXPECT_DOUBLE_EQ(got["ct/precision@5"], 0.15);
  EXPECT_EQ(got.count("xray/skipped_no_label"), 0u);
  // Several encoders: the evaluated one is the first (file order, not sorted).
  std::ofstream(dir / "v2.json") << eval::to_json(
                                        {{"trained", fake_report({{"xray", 4, 0.75, 1, 0.5}})},
                                         {"histogram", fake_report({{"xray", 4, 0.1, 0.2, 0.1}})}})
                                        .dump();
  got.clear();
  for (auto& e : read_evaluations(dir / "v2.json", "run", 7))
    got[e.modality + "/" + e.metric] = e.value;
  EXPECT_DOUBLE_EQ(got["xray/recall@1"], 0.75);
  EXPECT_DOUBLE_EQ(got["mean/recall@1"], 0.75);
  EXPECT_EQ(got.size(), 11u);  // xray and mean: recall@1,5, precision@1,5, map@5; xray/queries
  std::ofstream(dir / "bad.json") << R"({"per_modality": {}})";
  try {
    read_evaluations(dir / "bad.json", "run", 7);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos);
  }
}

// A modality with no evaluable query is an absent row with its reason, never a
// zero in the mean; the mean says how many modalities it covers.
TEST(Orchestrator, AbsentModalitiesAreShownAndLeftOutOfTheMean) {
  TempDir dir("orch");
  using testing::fake_report;
  std::ofstream(dir / "r.json") << eval::to_json(fake_report({{"xray", 10, 0.5, 0.9, 0.4},
                                                              {"ct", 4, 0.25, 0.75, 0.3},
                                                              {"mri", 0, 0, 0, 0}}))
                                       .dump();
  auto rows = read_evaluations(dir / "r.json", "run", 7);
  std::map<std::string, double> got;
  std::map<std::string, std::string> absent;
  for (auto& e : rows) {
    if (e.absent.empty())
      got[e.modality + "/" + e.metric] = e.value;
    else
      absent[e.modality] = e.absent;
  }
  EXPECT_DOUBLE_EQ(got["mean/recall@1"], 0.375);
  EXPECT_EQ(got.count("mri/recall@1"), 0u);
  ASSERT_EQ(absent.count("mri"), 1u);
  EXPECT_NE(absent["mri"].find("too few patients"), std::string::npos) << absent["mri"];

  // Through the state database into `m3ret status`, its JSON and the scaling table.
  auto db = dir / "s.db";
  {
    State st(db);
    st.upsert_run({"r1", "{}", 1.0, "run", "shards", RunState::kSucceeded, 0});
    st.set_evaluations("r1", 7, rows);
    std::ofstream(dir / "none.json") << eval::to_json(fake_report({{"mri", 0, 0, 0, 0}})).dump();
    st.upsert_run({"r2", "{}", 1.0, "run2", "shards", RunState::kSucceeded, 0});
    st.set_evaluations("r2", 3, read_evaluations(dir / "none.json", "r2", 3));
  }
  State st(db);
  auto j = status_json(st);
  EXPECT_EQ(j["runs"][0]["final"]["mri"]["absent"], absent["mri"]);
  EXPECT_EQ(j["runs"][0]["mean_note"], "mean over 2 of 3");
  EXPECT_EQ(j["runs"][1]["mean_note"], "absent");
  EXPECT_TRUE(j["runs"][1]["final"]["mean"].contains("absent"));
  const std::string text = status_text(st);
  EXPECT_NE(text.find("0.3750 (mean over 2 of 3)"), std::string::npos) << text;
  EXPECT_NE(text.find("| r2 | succeeded | 3 | mri | absent |"), std::string::npos) << text;
  EXPECT_NE(text.find("| r2 | succeeded | 3 | mean | absent |"), std::string::npos) << text;
  EXPECT_NE(text.find("| absent: " + absent["mri"] + " |"), std::string::npos) << text;
  EXPECT_NE(text.find("| mean over 2 of 3 |"), std::string::npos) << text;
  const auto table = scaling_table(st);
  ASSERT_EQ(table.columns.back(), "note");
  for (const auto& row : table.rows) {
    if (row[0] == "r1" && row[3] == "mri") {
      EXPECT_EQ(row[4], "absent") << "queries";
      EXPECT_EQ(row[5], "absent") << "recall@1";
    }
  }
  const std::string html = status_html(st, dir.path());
  EXPECT_NE(html.find("<td class=\"num\">0.3750 (mean over 2 of 3)</td>"), std::string::npos)
      << html;
  EXPECT_NE(html.find("<td class=\"num\">absent</td>"), std::string::npos) << html;
}

// What a session of `m3ret orchestrate` owns: one lock per state database, a
// database made for one sweep file and backend, the token and port files.
TEST(Session, LocksTheStateRefusesAnotherSweepOrBackendAndWritesTokenAndPort) {
  TempDir dir("session");
  const auto db = dir / "state.db";
  {
    StateLock lock(db);
    try {
      StateLock second(db);
      ADD_FAILURE() << "a second lock on one state database";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("another m3ret orchestrate (pid " +
                                           std::to_string(::getpid())),
                std::string::npos)
          << e.what();
    }
  }
  StateLock again(db);  // released with its owner
  State st(db);
  Sweep sweep;
  sweep.file = dir / "a.toml";
  check_ownership(st, db, sweep, "local");  // a new database belongs to anyone
  st.set_meta("sweep_file", sweep.file.string());
  st.set_meta("backend", "local");
  check_ownership(st, db, sweep, "local");
  EXPECT_THROW(check_ownership(st, db, sweep, "slurm"), Error);
  Sweep other = sweep;
  other.file = dir / "b.toml";
  try {
    check_ownership(st, db, other, "local");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("belongs to sweep"), std::string::npos) << e.what();
  }
  write_token_file(dir.path(), "secret");
  write_port_file(dir.path(), 8123);
  EXPECT_EQ(read(dir / "token"), "secret\n");
  EXPECT_EQ(fs::status(dir / "token").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(read(dir / "port"), "8123\n");
}

// A state with one run per (fraction, seed[, preset]): recall@1 of xray and ct
// (and their mean) at steps 10 and 20, differing per run so that seeds spread.
void fill_sweep_state(State& st, const std::vector<std::string>& presets) {
  int i = 0;
  for (const auto& preset : presets) {
    for (double frac : {0.25, 1.0}) {
      for (int seed : {1, 2}) {
        const std::string name = fmt::format("r{:03d}", i++);
        nlohmann::json params = {{"data_fraction", fmt::format("{:g}", frac)},
                                 {"train.seed", std::to_string(seed)},
                                 {"model.preset", preset}};
        st.upsert_run(
            {name, params.dump(), frac, "run-" + name, "shards", RunState::kSucceeded, 0});
        for (int64_t step : {10, 20}) {
          const double x = 0.1 * frac + 0.01 * seed + 0.001 * step + (preset == "small" ? 0.2 : 0);
          st.set_evaluations(name, step,
                             {{name, step, "xray", "recall@1", x, ""},
                              {name, step, "ct", "recall@1", x / 2, ""},
                              {name, step, "mean", "recall@1", 0.75 * x, ""}});
        }
      }
    }
  }
}

TEST(Report, PlotDataHasOnlyTheSweptAxesAndErrorBarsOverSeeds) {
  TempDir dir("plots");
  State st(dir / "s.db");
  fill_sweep_state(st, {"tiny"});  // model.preset has one value: not swept
  const auto data = plot_data(st);
  EXPECT_EQ(data["format"], "m3ret-plot-data");
  EXPECT_EQ(data["swept_axes"], nlohmann::json({"data_fraction", "train.seed"}));
  EXPECT_EQ(data["error_bars"], "min-max over train.seed");
  EXPECT_EQ(plot_files(data),
            std::vector<std::string>({"recall_vs_data_fraction.png", "recall_vs_step.png"}));
  const auto& frac = plot_named(data, "recall_vs_data_fraction.png");
  EXPECT_EQ(frac["x_scale"], "log");
  ASSERT_EQ(frac["series"].size(), 3u) << frac;  // ct, xray, then their mean
  EXPECT_EQ(frac["series"][2]["label"], "mean");
  EXPECT_EQ(frac["x_ticks"],
            nlohmann::json::parse(R"([{"x":0.25,"label":"0.25"},{"x":1.0,"label":"1"}])"));
  for (const auto& s : frac["series"]) {
    ASSERT_EQ(s["points"].size(), 2u) << s;
    for (const auto& pt : s["points"]) {
      EXPECT_EQ(pt["n"], 2) << "two seeds per point: " << pt;
      EXPECT_LT(pt["lo"].get<double>(), pt["hi"].get<double>()) << pt;
      EXPECT_NEAR(pt["y"].get<double>(), (pt["lo"].get<double>() + pt["hi"].get<double>()) / 2,
                  1e-12);
    }
  }
  // xray at fraction 0.25, step 20: seeds 1 and 2 give 0.025 + 0.02 + {0.01, 0.02}.
  EXPECT_NEAR(frac["series"][1]["points"][0]["y"].get<double>(), 0.06, 1e-12);
  const auto& step = plot_named(data, "recall_vs_step.png");
  EXPECT_TRUE(step["integer_x"].get<bool>());
  ASSERT_EQ(step["series"].size(), 2u);
  EXPECT_EQ(step["series"][0]["label"], "data_fraction=0.25");
  EXPECT_EQ(step["series"][0]["points"][1]["x"], 20.0);
  EXPECT_EQ(step["series"][0]["points"][1]["n"], 2);
}

TEST(Report, ModelSizeIsTheParameterCountOnALogAxisOrThePresetsInSizeOrder) {
  TempDir dir("plots");
  State st(dir / "s.db");
  fill_sweep_state(st, {"small", "tiny"});
  std::map<std::string, double> params;
  for (const auto& r : st.runs())
    params[r.name] = r.params_json.find("small") != std::string::npos ? 21.7e6 : 5.5e6;
  auto data = plot_data(st, params);
  EXPECT_EQ(plot_files(data),
            std::vector<std::string>(
                {"recall_vs_model_size.png", "recall_vs_data_fraction.png", "recall_vs_step.png"}));
  const auto& model = plot_named(data, "recall_vs_model_size.png");
  EXPECT_EQ(model["x_scale"], "log");
  ASSERT_EQ(model["x_ticks"].size(), 2u);
  EXPECT_EQ(model["x_ticks"][0], nlohmann::json({{"x", 5.5e6}, {"label", "5.5M\ntiny"}}));
  // Another axis is swept (data_fraction): one line per fraction, the mean over modalities.
  ASSERT_EQ(model["series"].size(), 2u);
  EXPECT_EQ(model["series"][1]["label"], "data_fraction=1");
  EXPECT_EQ(model["series"][1]["points"][1]["x"], 21.7e6);
  EXPECT_EQ(plot_named(data, "recall_vs_step.png")["series"].size(), 4u);
  // Without every run's parameter count: the presets in size order (tiny before small).
  params.erase(params.begin());
  data = plot_data(st, params);
  const auto& cat = plot_named(data, "recall_vs_model_size.png");
  EXPECT_EQ(cat["x_scale"], "linear");
  EXPECT_EQ(cat["x_ticks"],
            nlohmann::json::parse(R"([{"x":0.0,"label":"tiny"},{"x":1.0,"label":"small"}])"));
}

// Width and height of a PNG file; {0, 0} when it is not one.
std::pair<uint32_t, uint32_t> png_size(const fs::path& f) {
  const std::string b = read(f);
  if (b.size() < 24 || b.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0 || b.compare(12, 4, "IHDR") != 0)
    return {0, 0};
  auto be32 = [&](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
    return v;
  };
  return {be32(16), be32(20)};
}

bool have_matplotlib(std::string* why) {
  auto r = launcher::run_capture({default_python().string(), "-c", "import matplotlib"});
  *why = default_python().string() + " has no matplotlib (Debian: python3-matplotlib): " + r.err;
  return r.status == 0;
}

TEST(Report, ChartsArePngsDrawnByMatplotlib) {
  std::string why;
  if (!have_matplotlib(&why)) GTEST_SKIP() << why;
  TempDir dir("plots");
  State st(dir / "s.db");
  fill_sweep_state(st, {"tiny"});
  write_scaling_report(st, dir / "report");
  const auto outcome = read_plot_outcome(dir / "report");
  EXPECT_EQ(outcome.skipped, "");
  EXPECT_EQ(outcome.files,
            std::vector<std::string>({"recall_vs_data_fraction.png", "recall_vs_step.png"}));
  for (const auto& f : outcome.files)
    EXPECT_EQ(png_size(dir / "report" / f), std::make_pair(800u, 480u)) << f;
  EXPECT_FALSE(fs::exists(dir / "report/recall_vs_model_size.png")) << "model size is not swept";
  const auto md = read(dir / "report/scaling.md");
  EXPECT_NE(md.find("![recall_vs_step](recall_vs_step.png)"), std::string::npos) << md;
  EXPECT_EQ(md.find("skipped"), std::string::npos) << md;
  // Unchanged data: the charts are not drawn again.
  const auto before = fs::last_write_time(dir / "report/recall_vs_step.png");
  write_scaling_report(st, dir / "report", {{"/nonexistent/python3", {}}, {}});
  EXPECT_EQ(fs::last_write_time(dir / "report/recall_vs_step.png"), before);
  EXPECT_EQ(read_plot_outcome(dir / "report").skipped, "");
}

TEST(Report, WithoutPythonOrMatplotlibThePlotsAreSkippedAndTheReportSaysWhy) {
  TempDir dir("plots");
  State st(dir / "s.db");
  fill_sweep_state(st, {"tiny"});
  write_scaling_report(st, dir / "report", {{dir / "no-python", {}}, {}});
  auto outcome = read_plot_outcome(dir / "report");
  EXPECT_TRUE(outcome.files.empty());
  EXPECT_NE(outcome.skipped.find("could not be started (set M3RET_PLOT_PYTHON"), std::string::npos)
      << outcome.skipped;
  EXPECT_NE(read(dir / "report/scaling.md")
                .find("Plots skipped: Python '" + (dir / "no-python").string()),
            std::string::npos);
  EXPECT_TRUE(fs::exists(dir / "report/scaling.csv"));
  // A Python without matplotlib (its site packages switched off): the script says so.
  if (::access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  const fs::path bare = dir / "bare-python";
  std::ofstream(bare) << "#!/bin/sh\nexec /usr/bin/python3 -I -S \"$@\"\n";
  fs::permissions(bare, fs::perms::owner_all);
  st.set_evaluations("r000", 30,
                     {{"r000", 30, "mean", "recall@1", 0.5, ""}});  // new data: drawn again
  write_scaling_report(st, dir / "report", {{bare, {}}, {}});
  outcome = read_plot_outcome(dir / "report");
  EXPECT_NE(outcome.skipped.find("matplotlib is not installed"), std::string::npos)
      << outcome.skipped;
  EXPECT_NE(read(dir / "report/scaling.md")
                .find("Plots skipped: m3ret_plots.py exited with 3: matplotlib is not installed"),
            std::string::npos)
      << read(dir / "report/scaling.md");
  EXPECT_FALSE(fs::exists(dir / "report/recall_vs_step.png"));
}

// The chromium binary for the status page test; "" when none is installed.
std::string find_chromium() {
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
    auto r = launcher::run_capture({"sh", "-c", std::string("command -v ") + name});
    if (r.status == 0 && !r.out.empty()) return r.out.substr(0, r.out.find('\n'));
  }
  return "";
}

// Headless Chromium on a file; its stdout. Root needs --no-sandbox.
launcher::CommandResult headless(const std::string& chromium, const fs::path& profile,
                                 const std::vector<std::string>& args, const fs::path& page) {
  std::vector<std::string> argv = {chromium,
                                   "--headless",
                                   "--no-sandbox",
                                   "--disable-gpu",
                                   "--hide-scrollbars",
                                   "--no-first-run",
                                   "--disable-dev-shm-usage",
                                   "--user-data-dir=" + profile.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("file://" + page.string());
  return launcher::run_capture(argv);
}

// Distinct colours of a PNG (decoded with libpng), 0 when it cannot be read.
size_t png_colours(const fs::path& f) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, f.c_str())) return 0;
  img.format = PNG_FORMAT_RGB;
  std::vector<unsigned char> px(PNG_IMAGE_SIZE(img));
  if (!png_image_finish_read(&img, nullptr, px.data(), 0, nullptr)) return 0;
  std::set<uint32_t> colours;
  for (size_t i = 0; i + 2 < px.size() && colours.size() < 1000; i += 3)
    colours.insert((uint32_t(px[i]) << 16) | (uint32_t(px[i + 1]) << 8) | px[i + 2]);
  return colours.size();
}

// The static status.html in headless Chromium: a screenshot of the expected
// size that is not blank, and a DOM with the runs table (one column per sweep
// parameter, a report link per run) and every chart loaded.
TEST(StatusPage, StaticStatusHtmlRendersInHeadlessChromium) {
  const std::string chromium = find_chromium();
  if (chromium.empty()) GTEST_SKIP() << "no chromium on PATH (Debian: chromium)";
  std::string why;
  if (!have_matplotlib(&why)) GTEST_SKIP() << why;
  TempDir dir("page");
  State st(dir / "s.db");
  fill_sweep_state(st, {"tiny"});
  st.set_meta("sweep_name", "page<test>");
  write_scaling_report(st, dir / "report");
  write_status_page(st, dir / "report");
  const fs::path page = dir / "report/status.html";
  ASSERT_TRUE(fs::exists(page));

  const fs::path shot = dir / "shot.png";
  auto r = headless(chromium, dir / "profile",
                    {"--window-size=1280,1600", "--screenshot=" + shot.string()}, page);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(png_size(shot), std::make_pair(1280u, 1600u)) << r.err;
  EXPECT_GT(png_colours(shot), 50u) << "a blank screenshot";

  r = headless(chromium, dir / "profile", {"--dump-dom"}, page);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string& dom = r.out;
  EXPECT_NE(dom.find("<h1>Sweep page&lt;test&gt;</h1>"), std::string::npos) << dom.substr(0, 2000);
  const auto runs = dom.substr(dom.find("<table id=\"runs\">"));
  for (const char* th : {"<th>run</th>", "<th>data_fraction</th>", "<th>model.preset</th>",
                         "<th>train.seed</th>", "<th>mean recall@1</th>", "<th>report</th>"}) {
    EXPECT_NE(runs.find(th), std::string::npos) << th << "\n" << runs.substr(0, 2000);
  }
  EXPECT_NE(runs.find("href=\"../evals/r000/step-000000020/report.md\""), std::string::npos)
      << runs.substr(0, 3000);
  // Every chart loaded: an image that fails to load is replaced by a note.
  for (const char* png : {"recall_vs_data_fraction.png", "recall_vs_step.png"}) {
    const auto at = dom.find(std::string("<img src=\"") + png + "\"");
    ASSERT_NE(at, std::string::npos) << png << "\n" << dom;
    const auto tag = dom.substr(at, dom.find('>', at) - at);
    EXPECT_NE(tag.find("data-loaded=\"800x480\""), std::string::npos) << tag;
  }
  // The check can fail: a chart that does not load is no image in the DOM.
  fs::remove(dir / "report/recall_vs_step.png");
  r = headless(chromium, dir / "profile", {"--dump-dom"}, page);
  EXPECT_EQ(r.out.find("<img src=\"recall_vs_step.png\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("<img src=\"recall_vs_data_fraction.png\""), std::string::npos) << r.out;
}

// --- local backend: real processes ----------------------------------------

Observed wait_for(Backend& b, const std::string& id, const fs::path& dir) {
  for (int i = 0; i < 600; ++i) {
    auto o = b.poll(id, dir);
    if (is_terminal(o.state)) return o;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return {JobState::kRunning, -1, "timeout"};
}

TEST(LocalBackend, RunsJobsWithLogsAndExitCodes) {
  TempDir dir("local");
  auto b = make_local_backend(2);
  std::string id =
      b->submit({"j1", JobKind::kEval, "echo hello; echo oops >&2; exit 3", dir / "j1", {}, 1});
  auto o = wait_for(*b, id, dir / "j1");
  EXPECT_EQ(o.state, JobState::kFailed);
  EXPECT_EQ(o.exit_code, 3);
  auto log = read(dir / "j1/log");
  EXPECT_NE(log.find("hello"), std::string::npos);
  EXPECT_NE(log.find("oops"), std::string::npos);
  EXPECT_EQ(b->find("j1", dir / "j1"), id);
  EXPECT_FALSE(b->find("never", dir / "never"));

  std::string ok = b->submit({"j2", JobKind::kEval, "true", dir / "j2", {}, 1});
  EXPECT_EQ(wait_for(*b, ok, dir / "j2").state, JobState::kSucceeded);
}

// A stand-in mpiexec that writes each argument it got on a line of FILE.
fs::path arg_recorder(const fs::path& dir, const fs::path& file) {
  fs::create_directories(dir);
  const fs::path exe = dir / "rec mpiexec";
  std::ofstream(exe) << "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '"
                     << file.string() << "'\n";
  fs::permissions(exe, fs::perms::owner_all);
  return exe;
}

TEST(LocalBackend, MpiexecOptionsReachTheLaunchedCommandLine) {
  TempDir dir("local");
  const fs::path exe = arg_recorder(dir / "bin", dir / "args.txt");
  auto b = make_local_backend(1);
  const std::string mpiexec =
      launcher::shell_line({exe.string()}) + " --mca btl tcp,self -x 'A=b c'";
  const std::string cmd = b->mpi_launch_prefix(JobKind::kTrain, 2, mpiexec) + " m3ret train";
  std::string id = b->submit({"j", JobKind::kTrain, cmd, dir / "j", {}, 2});
  ASSERT_EQ(wait_for(*b, id, dir / "j").state, JobState::kSucceeded) << read(dir / "j/log");
  std::string want = "--mca\nbtl\ntcp,self\n-x\nA=b c\n--bind-to\nnone\n-n\n2\n--oversubscribe\n";
  if (geteuid() == 0) want += "--allow-run-as-root\n";
  EXPECT_EQ(read(dir / "args.txt"), want + "m3ret\ntrain\n");
}

TEST(LocalBackend, CancelEndsTheWholeJobAndUsr1ReachesIt) {
  TempDir dir("local");
  auto b = make_local_backend(2);
  const fs::path started = dir / "s-started";
  std::string id = b->submit({"s",
                              JobKind::kTrain,
                              "touch '" + started.string() + "'; sleep 30 & wait",
                              dir / "s",
                              {},
                              1});
  for (int i = 0; i < 1000 && !fs::exists(started); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(fs::exists(started));
  EXPECT_EQ(b->poll(id, dir / "s").state, JobState::kRunning);
  auto t0 = std::chrono::steady_clock::now();
  b->cancel(id);
  auto o = wait_for(*b, id, dir / "s");
  EXPECT_EQ(o.state, JobState::kFailed);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));

  // SIGUSR1 to the wrapper is forwarded to the command (the trainer's
  // checkpoint-and-stop signal), whose exit code is recorded.
  // (The command says when it is ready; the wrapper set its own trap before starting it.)
  const fs::path ready = dir / "u-ready";
  std::string u =
      b->submit({"u",
                 JobKind::kTrain,
                 "trap 'exit 75' USR1; touch '" + ready.string() + "'; while :; do sleep 0.1; done",
                 dir / "u",
                 {},
                 1});
  for (int i = 0; i < 1000 && !fs::exists(ready); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(fs::exists(ready));
  ::kill(std::stoi(u), SIGUSR1);  // the wrapper's traps were set before the command started
  auto ou = wait_for(*b, u, dir / "u");
  EXPECT_EQ(ou.exit_code, 75);
}

// A rank whose collective timed out appends its message to the file the wrapper of a train job
// watches ($M3RET_COLLECTIVE_TIMEOUT_FILE, in the job's folder on the shared file system). A node
// cut off would hold mpirun until Slurm declares the node lost: the wrapper ends the command and
// everything it started, the process groups of their own included (mpirun's sruns), and the job
// fails with the rank's exit code, 3, for the orchestrator to resubmit with --resume auto.
TEST(LocalBackend, ACollectiveTimeoutEndsTheTrainJobAndEverythingItStarted) {
  TempDir dir("local");
  auto b = make_local_backend(2);
  const fs::path pid_file = dir / "detached.pid";
  const std::string id = b->submit(
      {"t",
       JobKind::kTrain,
       "setsid sleep 300 & echo $! > '" + pid_file.string() +
           "'; sleep 0.5; echo 'm3ret: collective allreduce timed out after 20.0 s at step 3 on "
           "rank 1 of 2 (host node2)' >> \"$M3RET_COLLECTIVE_TIMEOUT_FILE\"; sleep 300",
       dir / "t",
       {},
       2});
  const Observed o = wait_for(*b, id, dir / "t");
  EXPECT_EQ(o.state, JobState::kFailed) << o.reason;
  EXPECT_EQ(o.exit_code, 3);
  EXPECT_NE(read(dir / "t/log")
                .find("m3ret-job: collective allreduce timed out after 20.0 s at "
                      "step 3 on rank 1 of 2; ending the job"),
            std::string::npos)
      << read(dir / "t/log");
  // The sleep in a session of its own ended too (gone, or a zombie not yet reaped).
  const int detached = std::stoi(read(pid_file));
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    std::ifstream stat("/proc/" + std::to_string(detached) + "/stat");
    std::string pid, comm, state;
    gone = !(stat >> pid >> comm >> state) || state == "Z";
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(gone) << "the detached process " << detached << " outlived the job";
  if (!gone) ::kill(detached, SIGKILL);

  // The file is the train job's: a shard job's wrapper neither sets it nor watches it.
  const fs::path env = dir / "shard-env";
  const std::string shard =
      b->submit({"s",
                 JobKind::kShard,
                 "echo \"${M3RET_COLLECTIVE_TIMEOUT_FILE:-unset}\" > '" + env.string() + "'",
                 dir / "s",
                 {},
                 1});
  EXPECT_EQ(wait_for(*b, shard, dir / "s").state, JobState::kSucceeded);
  EXPECT_EQ(read(env), "unset\n");
}

TEST(LocalBackend, AJobLeftByAKilledOrchestratorIsFollowedByItsExitCode) {
  TempDir dir("local");
  std::string id;
  {
    auto b = make_local_backend(1);
    id = b->submit({"k", JobKind::kEval, "sleep 0.5; exit 4", dir / "k", {}, 1});
  }
  auto b2 =
      make_local_backend(1);  // a "new orchestrator": not the child's parent for waitpid purposes
  EXPECT_EQ(b2->find("k", dir / "k"), id);
  auto o = wait_for(*b2, id, dir / "k");
  EXPECT_EQ(o.exit_code, 4);
}

TEST(LocalBackend, ConcurrentJobsShareTheCoresUnlessTheUserSetThreads) {
  TempDir dir("local");
  const char* keys[] = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY"};
  std::map<std::string, std::string> saved;
  for (const char* k : keys) {
    if (const char* v = getenv(k)) saved[k] = v;
    unsetenv(k);
  }
  const std::string cmd = "echo \"$OMP_NUM_THREADS $OPENBLAS_NUM_THREADS $OMP_WAIT_POLICY\"";
  auto b = make_local_backend(1024);  // more jobs than cores: one thread each, sleeping waits
  std::string id = b->submit({"t", JobKind::kTrain, cmd, dir / "t", {}, 2});
  EXPECT_EQ(wait_for(*b, id, dir / "t").state, JobState::kSucceeded);
  EXPECT_EQ(read(dir / "t/log"), "1 1 PASSIVE\n");
  setenv("OMP_NUM_THREADS", "3", 1);  // the user's choice is kept
  id = b->submit({"u", JobKind::kTrain, cmd, dir / "u", {}, 2});
  EXPECT_EQ(wait_for(*b, id, dir / "u").state, JobState::kSucceeded);
  EXPECT_EQ(read(dir / "u/log"), "3 1 PASSIVE\n");
  unsetenv("OMP_NUM_THREADS");
  for (const auto& [k, v] : saved) setenv(k.c_str(), v.c_str(), 1);
}

TEST(LocalBackend, ACrashBetweenSpawnAndRecordingTheIdDoesNotStartTheJobTwice) {
  TempDir dir("local");
  const fs::path runs = dir / "runs.txt";
  const std::string cmd = "echo ran >> '" + runs.string() + "'; sleep 1";
  struct Crash {};
  pid_t child = 0;
  {
    // The orchestrator "dies" right after posix_spawn: the job is stopped
    // before its wrapper wrote anything, and nobody recorded its pid.
    auto b = make_local_backend(1, [&](int pid) {
      child = pid;
      ::kill(pid, SIGSTOP);
      throw Crash{};
    });
    EXPECT_THROW(b->submit({"c", JobKind::kEval, cmd, dir / "c", {}, 1}), Crash);
  }
  ASSERT_GT(child, 0);
  ASSERT_FALSE(fs::exists(dir / "c/backend_id"))
      << "the wrapper wrote its id before it was stopped";
  std::thread resume([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::kill(child, SIGCONT);
  });
  auto b2 = make_local_backend(1);        // the restarted orchestrator
  auto found = b2->find("c", dir / "c");  // the job holds its lock: wait for its id
  resume.join();
  ASSERT_TRUE(found);
  EXPECT_EQ(*found, std::to_string(child));
  // Even a blind resubmission follows the running job instead of starting another.
  EXPECT_EQ(b2->submit({"c", JobKind::kEval, cmd, dir / "c", {}, 1}), std::to_string(child));
  EXPECT_EQ(wait_for(*b2, *found, dir / "c").state, JobState::kSucceeded);
  EXPECT_EQ(read(runs), "ran\n");

  // A crash before the spawn leaves at most an unlocked lock file: not found, started once.
  fs::create_directories(dir / "d");
  std::ofstream(dir / "d/lock").flush();
  EXPECT_FALSE(b2->find("d", dir / "d"));
  std::string id = b2->submit({"d", JobKind::kEval, cmd, dir / "d", {}, 1});
  EXPECT_EQ(wait_for(*b2, id, dir / "d").state, JobState::kSucceeded);
  EXPECT_EQ(read(runs), "ran\nran\n");
  // A finished job no longer holds its lock; its id and exit code remain.
  EXPECT_EQ(b2->find("d", dir / "d"), id);
  EXPECT_EQ(b2->poll(id, dir / "d").state, JobState::kSucceeded);
}

// A work folder name that a shell must never see unquoted.
const char* kHostileName = "it's a $(touch pwned) dir";

TEST(LocalBackend, AJobDirWithQuotesSpacesAndCommandSubstitutionIsJustAName) {
  TempDir dir("local");
  const fs::path jd = dir / kHostileName / "job";
  fs::remove(fs::current_path() / "pwned");
  auto b = make_local_backend(1);
  std::string cmd = "echo \"$M3RET_JOB_DIR\" > " + launcher::shell_line({(jd / "out").string()});
  std::string id = b->submit({"q", JobKind::kEval, cmd, jd, {}, 1});
  auto o = wait_for(*b, id, jd);
  EXPECT_EQ(o.state, JobState::kSucceeded) << o.reason << "\n" << read(jd / "log");
  EXPECT_EQ(read(jd / "out"), jd.string() + "\n");
  EXPECT_EQ(read_exit_code(jd), 0);
  EXPECT_EQ(b->find("q", jd), id);
  EXPECT_FALSE(fs::exists(fs::current_path() / "pwned"));
  fs::remove(fs::current_path() / "pwned");
}

TEST(LocalBackend, AJobFileThatCannotBeOpenedIsAnErrorNotALostJob) {
  TempDir dir("local");
  auto b = make_local_backend(1);
  std::string id = b->submit({"e", JobKind::kEval, "true", dir / "e", {}, 1});
  while (!fs::exists(dir / "e/exit_code"))
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // Out of descriptors: the lowest free one becomes the limit, so every open fails (EMFILE).
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  int lowest = ::dup(0);
  ASSERT_GE(lowest, 0);
  ::close(lowest);
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(lowest);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  std::optional<Observed> o;
  std::exception_ptr caught;
  try {
    o = b->poll(id, dir / "e");
  } catch (...) {
    caught = std::current_exception();
  }
  ::setrlimit(RLIMIT_NOFILE, &saved);
  // Read only with descriptors again: UBSan's check of e.what()'s dynamic type tests the memory
  // through a pipe, and without descriptors takes the object for an invalid one.
  std::string error;
  try {
    if (caught) std::rethrow_exception(caught);
  } catch (const Error& e) {
    error = e.what();
  }
  EXPECT_FALSE(o) << "read as " << to_string(o->state) << ": " << o->reason;
  EXPECT_NE(error.find("exit_code"), std::string::npos) << error;
  // With descriptors again, the job that was reaped meanwhile reads as done.
  auto done = b->poll(id, dir / "e");
  EXPECT_EQ(done.state, JobState::kSucceeded) << done.reason;
}

// --- Slurm backend with stand-in commands ----------------------------------

// An executable shell script BIN/NAME standing in for a tool (Slurm's, m3ret).
void stand_in(const fs::path& bin, const std::string& name, const std::string& body) {
  std::ofstream(bin / name) << "#!/bin/sh\n" << body;
  fs::permissions(bin / name, fs::perms::owner_all);
}

// slurm/pretrain.sbatch by hand, without Slurm (m3ret and scontrol stand-ins): a collective
// timeout ends the job step and requeues the job, at most M3RET_MAX_TIMEOUT_REQUEUES (3) times in
// a row without a new checkpoint; a new checkpoint starts the count again.
TEST(SlurmTemplate, ACollectiveTimeoutRequeuesAtMostThreeTimesInARowWithoutANewCheckpoint) {
  TempDir dir("sbatchcap");
  fs::create_directories(dir / "bin");
  auto script = [&](const std::string& name, const std::string& body) {
    stand_in(dir / "bin", name, body);
  };
  // The ranks: one times out, and the step holds on (as mpirun does while a node is cut off).
  script("m3ret",
         "mkdir -p \"$(dirname \"$M3RET_COLLECTIVE_TIMEOUT_FILE\")\"\n"
         "echo 'm3ret: collective allreduce timed out after 20.0 s at step 5 on rank 1 of 2 (host "
         "node2)' >> \"$M3RET_COLLECTIVE_TIMEOUT_FILE\"\n"
         "setsid sleep 300 &\n"
         "exec sleep 300\n");
  const fs::path calls = dir / "scontrol.calls";
  script("scontrol", "echo \"$*\" >> '" + calls.string() + "'\n");
  const fs::path run = dir / "run";
  fs::create_directories(run / "checkpoints");
  const auto start = [&] {
    return launcher::run_capture({"env", "M3RET=" + (dir / "bin/m3ret").string(), "SLURM_JOB_ID=42",
                                  "PATH=" + (dir / "bin").string() + ":" + std::getenv("PATH"),
                                  "bash",
                                  (testing::source_dir() / "slurm/pretrain.sbatch").string(),
                                  "config.toml", "shards", run.string()});
  };
  auto requeues = [&] {
    std::ifstream in(calls);
    int n = 0;
    for (std::string line; std::getline(in, line); n += line == "requeue 42") {
    }
    return n;
  };
  const std::string ended =
      "m3ret-pretrain: collective allreduce timed out after 20.0 s at step 5 on rank 1 of 2; "
      "ending the job step (m3ret, mpirun and the sruns it started) and ";
  std::ofstream(run / "checkpoints/latest") << "step-00000004\n";
  for (int i = 1; i <= 4; ++i) {
    const auto r = start();
    EXPECT_EQ(r.status, 3) << r.out << r.err;
    if (i <= 3) {
      EXPECT_NE(r.out.find(ended + "requeueing job 42\n"), std::string::npos) << r.out;
      EXPECT_EQ(requeues(), i);
    } else {
      EXPECT_NE(r.out.find(ended + "not requeueing job 42: 4 collective timeouts in a row since "
                                   "checkpoint step-00000004 (M3RET_MAX_TIMEOUT_REQUEUES=3)\n"),
                std::string::npos)
          << r.out;
      EXPECT_EQ(requeues(), 3);
    }
  }
  std::ofstream(run / "checkpoints/latest") << "step-00000006\n";
  const auto r = start();
  EXPECT_EQ(r.status, 3);
  EXPECT_NE(r.out.find(ended + "requeueing job 42\n"), std::string::npos) << r.out;
  EXPECT_EQ(requeues(), 4);
  EXPECT_EQ(read(run / "logs/collective-timeout-requeues"), "step-00000006 1\n");
}

TEST(SlurmBackend, SubmitsTheTemplateWithAfterokAndCancelsAJobWhoseDependencyFailed) {
  // sbatch/squeue/scontrol/scancel stand-ins on PATH record their arguments
  // and answer like Slurm (the real Slurm is in test_slurm_orchestrator).
  TempDir dir("slurmfake");
  fs::create_directories(dir / "bin");
  auto script = [&](const std::string& name, const std::string& body) {
    stand_in(dir / "bin", name, body);
  };
  const std::string log = (dir / "calls").string();
  script("sbatch", "echo \"$*\" >> '" + log +
                       ".sbatch'\n"
                       "echo \"$(( 100 + $(wc -l < '" +
                       log + ".sbatch') ));m3rettest\"\n");
  script("squeue", "echo \"$*\" >> '" + log +
                       ".squeue'\n"
                       "case \"$3\" in\n"
                       "101) echo 'RUNNING None' ;;\n"
                       "102) echo 'PENDING DependencyNeverSatisfied' ;;\n"
                       "*) echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1 ;;\n"
                       "esac\n");
  script("scontrol",
         "echo \"JobId=$3 JobName=x UserId=root(0) JobState=CANCELLED "
         "Reason=DependencyNeverSatisfied Dependency=afterok:101(failed)\"\n");
  script("scancel", "echo \"$*\" >> '" + log + ".scancel'\n");
  std::string old_path = getenv("PATH") ? getenv("PATH") : "";
  setenv("PATH", ((dir / "bin").string() + ":" + old_path).c_str(), 1);
  struct RestorePath {
    std::string p;
    ~RestorePath() { setenv("PATH", p.c_str(), 1); }
  } restore{old_path};

  SlurmOptions o;
  o.templates = testing::source_dir() / "slurm";
  o.nodes = 2;
  o.ntasks_per_node = 4;
  o.partition = "gpu";
  o.time = "02:00:00";
  o.extra_args = {"--qos=high"};
  auto b = make_slurm_backend(o);
  EXPECT_TRUE(b->supports_dependencies());
  EXPECT_EQ(b->submit({"sw-shard-a0", JobKind::kShard, "echo shard", dir / "j1", {}, 2}), "101");
  EXPECT_EQ(b->submit({"sw-r0-train-a0", JobKind::kTrain, "echo train", dir / "j2", {"101"}, 1}),
            "102");
  std::vector<std::string> calls;
  {
    std::ifstream in(log + ".sbatch");
    for (std::string l; std::getline(in, l);) calls.push_back(l);
  }
  ASSERT_EQ(calls.size(), 2u);
  auto has = [](const std::string& line, const std::string& arg) {
    return (" " + line + " ").find(" " + arg + " ") != std::string::npos;
  };
  EXPECT_TRUE(has(calls[0], "--parsable") && has(calls[0], "--job-name=sw-shard-a0")) << calls[0];
  EXPECT_TRUE(has(calls[0], "--nodes=1") && has(calls[0], "--ntasks=2")) << calls[0];
  EXPECT_EQ(calls[0].find("--dependency"), std::string::npos) << calls[0];
  for (const char* arg :
       {"--job-name=sw-r0-train-a0", "--dependency=afterok:101", "--kill-on-invalid-dep=yes",
        "--nodes=2", "--ntasks-per-node=4", "--partition=gpu", "--time=02:00:00", "--qos=high"}) {
    EXPECT_TRUE(has(calls[1], arg)) << arg << " not in: " << calls[1];
  }
  EXPECT_TRUE(has(calls[1], (dir / "j2/job.sbatch").string())) << calls[1];
  // The script: the template's header (checkpoint-and-requeue) with the job's command as body.
  auto sbatch = read(dir / "j2/job.sbatch");
  for (const char* line :
       {"#SBATCH --signal=B:USR1@300", "#SBATCH --requeue", "echo train", "$SLURM_JOB_ID",
        "M3RET_COLLECTIVE_TIMEOUT_FILE=\"$M3RET_JOB_DIR/collective-timeout\""}) {
    EXPECT_NE(sbatch.find(line), std::string::npos) << line;
  }
  EXPECT_EQ(read(dir / "j1/job.sbatch").find("M3RET_COLLECTIVE_TIMEOUT_FILE"), std::string::npos)
      << "a shard job watches for collective timeouts";
  EXPECT_EQ(sbatch.find("usage: sbatch"), std::string::npos) << "the template's own body was kept";

  // Train jobs take their ranks from the allocation; the others get explicit ones.
  const std::string root = geteuid() == 0 ? " --allow-run-as-root" : "";
  EXPECT_EQ(b->mpi_launch_prefix(JobKind::kTrain, 3, "srun"), "srun --bind-to none" + root);
  EXPECT_EQ(b->mpi_launch_prefix(JobKind::kShard, 2, "mpirun"),
            "mpirun --bind-to none -n 2 --oversubscribe" + root);
  // mpiexec with options: split like a shell, quoted again for the job script.
  EXPECT_EQ(b->mpi_launch_prefix(JobKind::kTrain, 3, "mpirun --mca btl tcp,self -x 'A=b c'"),
            "mpirun --mca btl tcp,self -x 'A=b c' --bind-to none" + root);
  EXPECT_EQ(make_local_backend(1)->mpi_launch_prefix(JobKind::kTrain, 2,
                                                     "'/opt/my mpi/mpiexec' --bind-to core"),
            "'/opt/my mpi/mpiexec' --bind-to core -n 2 --oversubscribe" + root);

  EXPECT_EQ(b->poll("101", dir / "j1").state, JobState::kRunning);
  // Pending forever on a failed dependency: cancelled, reported as a dependency failure.
  auto o2 = b->poll("102", dir / "j2");
  EXPECT_EQ(o2.state, JobState::kCancelled);
  EXPECT_EQ(o2.reason.rfind(kDependencyFailed, 0), 0u) << o2.reason;
  EXPECT_EQ(read(log + ".scancel"), "102\n");
  // Already cancelled by Slurm (--kill-on-invalid-dep) and gone from squeue.
  auto o3 = b->poll("103", dir / "j3");
  EXPECT_EQ(o3.state, JobState::kCancelled);
  EXPECT_EQ(o3.reason.rfind(kDependencyFailed, 0), 0u) << o3.reason;

  // A hostile job dir is a plain name in the sbatch script too: run the
  // script as Slurm would (in the submission folder, with a job id).
  const fs::path jd = dir / kHostileName;
  EXPECT_EQ(
      b->submit({"sw-q", JobKind::kEval, "echo \"$M3RET_JOB_DIR $MPIEXEC\" > ok.txt", jd, {}, 1}),
      "103");
  auto r = launcher::run_capture({"sh", "-c",
                                  "cd " + launcher::shell_line({dir.path().string()}) +
                                      " && SLURM_JOB_ID=7 bash " +
                                      launcher::shell_line({(jd / "job.sbatch").string()})});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(read_exit_code(jd), 0);
  EXPECT_EQ(read(dir / "ok.txt"), jd.string() + " mpirun\n");
  EXPECT_FALSE(fs::exists(dir / "pwned"));

  // A train job's mpiexec options reach its command line through the sbatch script.
  const fs::path exe = arg_recorder(dir / "bin2", dir / "args.txt");
  o.mpiexec = launcher::shell_line({exe.string()}) + " --mca btl tcp,self -x 'A=b c'";
  auto b2 = make_slurm_backend(o);
  const fs::path jt = dir / "jt";
  ASSERT_EQ(b2->submit({"sw-t",
                        JobKind::kTrain,
                        b2->mpi_launch_prefix(JobKind::kTrain, 1, o.mpiexec) + " m3ret train",
                        jt,
                        {},
                        1}),
            "104");
  r = launcher::run_capture({"sh", "-c",
                             "cd " + launcher::shell_line({dir.path().string()}) +
                                 " && SLURM_JOB_ID=8 bash " +
                                 launcher::shell_line({(jt / "job.sbatch").string()})});
  EXPECT_EQ(r.status, 0) << r.out << r.err << read(jt / "log");
  EXPECT_EQ(read(dir / "args.txt"),
            std::string("--mca\nbtl\ntcp,self\n-x\nA=b c\n--bind-to\nnone\n") +
                (geteuid() == 0 ? "--allow-run-as-root\n" : "") + "m3ret\ntrain\n");
}

// --- status server ---------------------------------------------------------

TEST(StatusServer, ServesJsonAndHtmlAndRefusesBadRequests) {
  TempDir dir("http");
  Rig rig(dir.path(), "[axes]\n\"train.seed\" = [1, 2]\n");
  rig.backend.polls_to_finish = 1000;
  State st(dir / "s.db");
  Orchestrator o(rig.sweep, st, rig.backend, {});
  o.step();
  HttpServer server(0, make_status_handler(st, &o, "sekret", o.report_dir().string()));
  uint16_t p = server.port();

  auto r = http(p, "GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(status_of(r), 200) << r;
  auto j = nlohmann::json::parse(r.substr(r.find("\r\n\r\n") + 4));
  EXPECT_EQ(j["sweep"], "t");
  EXPECT_EQ(j["runs"].size(), 2u);
  EXPECT_FALSE(j["jobs"].empty());

  r = http(p, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(r), 200);
  EXPECT_NE(r.find("r000-seed=1"), std::string::npos);
  std::string why;
  if (have_matplotlib(&why)) {
    EXPECT_NE(r.find("<img src=\"report/recall_vs_step.png\""), std::string::npos) << r;
    r = http(p, "GET /report/recall_vs_step.png HTTP/1.1\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(status_of(r), 200);
    EXPECT_NE(r.find("Content-Type: image/png"), std::string::npos) << r.substr(0, 200);
    EXPECT_EQ(r.substr(r.find("\r\n\r\n") + 4, 4), "\x89PNG");
  }
  EXPECT_EQ(status_of(http(p, "GET /report/.hidden.png HTTP/1.1\r\nConnection: close\r\n\r\n")),
            404);
  EXPECT_EQ(status_of(http(p, "GET /report/scaling.csv HTTP/1.1\r\nConnection: close\r\n\r\n")),
            200);
  EXPECT_EQ(status_of(http(p, "GET /report/../state.db HTTP/1.1\r\nConnection: close\r\n\r\n")),
            404);

  std::string cancel =
      "POST /api/runs/r000-seed=1/cancel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
  EXPECT_EQ(status_of(http(p, cancel + "\r\n")), 401);
  EXPECT_EQ(status_of(http(p, cancel + "Authorization: Bearer wrong\r\n\r\n")), 401);
  EXPECT_EQ(
      status_of(http(p, "GET /api/runs/r000-seed=1/cancel HTTP/1.1\r\nConnection: close\r\n\r\n")),
      405);
  EXPECT_EQ(status_of(http(p,
                           "POST /api/runs/nope/cancel HTTP/1.1\r\nAuthorization: Bearer "
                           "sekret\r\nConnection: close\r\n\r\n")),
            404);
  EXPECT_EQ(status_of(http(p, "GET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n")), 404);
  EXPECT_EQ(status_of(http(p, "HELLO THERE\r\n\r\n")), 400);
  EXPECT_EQ(status_of(http(p, "GET / HTTP/1.1\r\nContent-Length: zebra\r\n\r\n")), 400);
  EXPECT_EQ(status_of(http(p, "GET / HTTP/1.1\r\nX: " + std::string(40000, 'a') + "\r\n\r\n")),
            413);
  EXPECT_EQ(status_of(http(
                p, "POST /api/runs/r000-seed=1/retry HTTP/1.1\r\nContent-Length: 999999\r\n\r\n")),
            413);
  http(p, "GET / HT");  // a truncated request and a hang-up

  r = http(p, cancel + "Authorization: Bearer sekret\r\n\r\n");
  EXPECT_EQ(status_of(r), 200) << r;
  EXPECT_EQ(st.run("r000-seed=1")->state, "cancelled");
  // Retry of a run that is not failed or cancelled is refused with a reason.
  r = http(p,
           "POST /api/runs/r001-seed=2/retry HTTP/1.1\r\nAuthorization: Bearer "
           "sekret\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(r), 409) << r;
  // Still serving after all of that.
  EXPECT_EQ(status_of(http(p, "GET /api/status HTTP/1.1\r\nConnection: close\r\n\r\n")), 200);
}

// The server's thread reads the state and cancels a run while run() steps on
// another thread: the orchestrator's own lock keeps them apart (under TSan, a
// race here is a report).
TEST(StatusServer, AnswersAndActsWhileTheOrchestratorStepsOnAnotherThread) {
  TempDir dir("http");
  Rig rig(dir.path(), "[axes]\n\"train.seed\" = [1, 2]\n");
  rig.backend.polls_to_finish = 1000000;  // nothing finishes while the test runs
  State st(dir / "s.db");
  Orchestrator o(rig.sweep, st, rig.backend, {});
  o.reconcile();
  HttpServer server(0, make_status_handler(st, &o, "sekret", o.report_dir().string()));
  std::atomic<bool> stop{false};
  std::thread stepping([&] { o.run(0.001, stop); });
  for (int i = 0; i < 30; ++i) {
    auto r = http(server.port(), "GET /api/status HTTP/1.1\r\nConnection: close\r\n\r\n");
    ASSERT_EQ(status_of(r), 200) << r;
    EXPECT_EQ(nlohmann::json::parse(r.substr(r.find("\r\n\r\n") + 4))["runs"].size(), 2u);
  }
  auto r = http(server.port(),
                "POST /api/runs/r000-seed=1/cancel HTTP/1.1\r\nAuthorization: Bearer "
                "sekret\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(r), 200) << r;
  EXPECT_EQ(status_of(http(server.port(), "GET / HTTP/1.1\r\nConnection: close\r\n\r\n")), 200);
  stop = true;
  stepping.join();
  EXPECT_EQ(st.run("r000-seed=1")->state, "cancelled");
  EXPECT_NE(st.run("r001-seed=2")->state, "cancelled");
}

TEST(StatusServer, AtItsCapClosesTheLongestIdleClientsAndStillAnswers) {
  TempDir dir("http");
  Rig rig(dir.path(), "");
  State st(dir / "s.db");
  Orchestrator o(rig.sweep, st, rig.backend, {});
  o.step();
  HttpServerOptions opts;
  opts.max_connections = 8;
  opts.idle_timeout = std::chrono::minutes(10);  // only the cap can close an idle client here
  HttpServer server(0, make_status_handler(st, &o, "sekret", o.report_dir().string()), opts);
  EXPECT_EQ(server.max_connections(), 8u);
  namespace asio = boost::asio;
  asio::io_context io;
  std::vector<std::unique_ptr<asio::ip::tcp::socket>> idle;
  for (int i = 0; i < 40; ++i) {
    idle.push_back(std::make_unique<asio::ip::tcp::socket>(io));
    idle.back()->connect({asio::ip::make_address("127.0.0.1"), server.port()});
  }
  auto r = http(server.port(), "GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(r), 200) << r;
  // The oldest idle clients were closed to make room: they read end-of-file
  // (within a bounded wait; without the cap they would wait 10 minutes).
  for (int i = 0; i < 30; ++i) {
    pollfd p{idle[i]->native_handle(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 30000), 1) << "idle client " << i << " still open";
    char c;
    boost::system::error_code ec;
    idle[i]->read_some(asio::buffer(&c, 1), ec);
    EXPECT_EQ(ec, asio::error::eof) << i;
  }
}

TEST(StatusServer, JobsInheritNeitherThePortNorItsConnections) {
  TempDir dir("http");
  Rig rig(dir.path(), "");
  State st(dir / "s.db");
  Orchestrator o(rig.sweep, st, rig.backend, {});
  auto server =
      std::make_unique<HttpServer>(0, make_status_handler(st, &o, "t", o.report_dir().string()));
  const uint16_t port = server->port();
  // A keep-alive client whose connection the server has accepted and answered.
  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::socket client(io);
  client.connect({asio::ip::make_address("127.0.0.1"), port});
  asio::write(client, asio::buffer(std::string("GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")));
  boost::beast::flat_buffer buffer;
  boost::beast::http::response<boost::beast::http::string_body> answer;
  boost::beast::http::read(client, buffer, answer);
  ASSERT_EQ(answer.result_int(), 200u);
  // A job starts while the server listens and holds that connection.
  const fs::path ready = dir / "ready";
  auto b = make_local_backend(1);
  std::string id = b->submit(
      {"j", JobKind::kEval, "touch '" + ready.string() + "'; sleep 60", dir / "j", {}, 1});
  while (!fs::exists(ready)) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  server.reset();  // the orchestrator goes away; its job does not
  EXPECT_EQ(b->poll(id, dir / "j").state, JobState::kRunning);
  // The client sees its connection closed (a job holding a copy would keep it open) ...
  pollfd p{client.native_handle(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 30000), 1) << "the connection stays open after the server ended";
  boost::system::error_code ec;
  char c;
  client.read_some(asio::buffer(&c, 1), ec);
  EXPECT_EQ(ec, asio::error::eof);
  // ... and a restarted orchestrator gets the same port while the job runs.
  EXPECT_NO_THROW(HttpServer(port, make_status_handler(st, &o, "t", o.report_dir().string())));
  EXPECT_EQ(b->poll(id, dir / "j").state, JobState::kRunning);
  b->cancel(id);
  wait_for(*b, id, dir / "j");
}

TEST(Orchestrator, RetryGivesEveryJobOfTheRunItsWholeBudgetAgain) {
  TempDir dir("orch");
  Rig rig(dir.path(), "");  // max_retries = 1
  for (const char* a : {"a0", "a1"}) rig.backend.exit_codes[std::string("t-r000-eval-10-") + a] = 2;
  rig.run(dir / "s.db");
  {
    State st(dir / "s.db");
    ASSERT_EQ(st.run("r000")->state, "failed");
    Orchestrator o(rig.sweep, st, rig.backend, {});
    o.retry_run("r000");
  }
  rig.run(dir / "s.db");
  State st(dir / "s.db");
  EXPECT_EQ(st.run("r000")->state, "succeeded");
  EXPECT_EQ(st.job_by_name("t-r000-eval-10-a2")->state, JobState::kSucceeded);
}

}  // namespace
}  // namespace m3ret
