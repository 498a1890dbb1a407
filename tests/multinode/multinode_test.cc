// Several hosts on one machine: slurm/local-cluster.sh starts a Slurm cluster
// of two nodes, each a network namespace with its own address, host name and
// /tmp (a private bridge between them, the file system shared), and the
// slurm/ templates run on it unchanged with the real binary: Open MPI between
// the hosts over TCP, ranks and local ranks from the allocation.
//
// Each test brings its own cluster up (state under the build tree, not /tmp,
// which every node has of its own) and tears it down in TearDown, also when
// it fails; the CTest fixture `multinode_down` stops any cluster a crashed
// test left. They skip when not root or without network namespaces.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "launcher/orchestrator/state.h"
#include "launcher/process.h"
#include "test_util.h"
#include "model/export.h"

namespace m3ret {
namespace {

namespace fs = std::filesystem;
using launcher::run_capture;
using launcher::shell_line;
using Args = std::vector<std::string>;

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Args operator+(Args a, const Args& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

bool have_program(const std::string& prog) {
  return run_capture({"sh", "-c", "command -v " + prog}).status == 0;
}

// Polls `done` (every 0.2 s) until it is true or `seconds` have passed.
template <class F>
bool wait_until(double seconds, F done) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return true;
}

// A tiny dataset and model: 16 X-ray images of 32x32,
// MAE on the tiny preset, deterministic kernels, a checkpoint every 2 steps.
const Args kData = {"--config", (testing::source_dir() / "configs/demo.toml").string(),
                    "--set",    "synth.patients_per_class=2",
                    "--set",    "synth.samples_per_patient=2",
                    "--set",    "synth.modalities=[\"xray\"]",
                    "--set",    "preprocess.image_size=32",
                    "--set",    "preprocess.volume_size=32",
                    "--set",    "preprocess.volume_slices=8"};
const Args kTrain =
    kData + Args{"--set", "train.objective=mae",        "--set", "train.max_steps=4",
                 "--set", "train.checkpoint_every=2",   "--set", "train.keep_last=0",
                 "--set", "train.global_batch_size=4",  "--set", "train.warmup_steps=1",
                 "--set", "train.deterministic=true",   "--set", "loader.workers=1",
                 "--set", "train.modalities=[\"xray\"]"};
constexpr double kLr = 5e-4;  // configs/demo.toml's train.lr

// The PIDs of the processes called `name` on node `node` (in its namespace).
std::vector<int> node_processes(const std::string& k, int node, const std::string& name) {
  auto r = run_capture({"ip", "netns", "pids", fmt::format("m3rc{}-node{}", k, node)});
  std::vector<int> out;
  std::istringstream pids(r.out);
  for (int pid; pids >> pid;) {
    std::string comm = read(fmt::format("/proc/{}/comm", pid));
    if (comm.substr(0, comm.find('\n')) == name) out.push_back(pid);
  }
  return out;
}

// The last `lines` lines of `text`.
std::string tail(const std::string& text, int lines) {
  size_t at = text.size();
  if (at > 0 && text[at - 1] == '\n') --at;  // the newline that ends the last line
  for (int n = 0; n < lines; ++n) {
    if (at == 0) return text;
    at = text.rfind('\n', at - 1);
    if (at == std::string::npos) return text;
  }
  return text.substr(at + 1);
}

// Same weights up to float summation order (as tests/trainer/train_mpi_test.cc:
// every value within lr, the mean difference below 1e-5).
void expect_same_weights(const trainer::NamedTensors& a, const trainer::NamedTensors& b,
                         const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  ASSERT_FALSE(a.empty()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first) << what;
    auto d = (a[i].second - b[i].second).abs();
    EXPECT_LT(d.max().item<double>(), kLr) << what << ": " << a[i].first;
    EXPECT_LT(d.mean().item<double>(), 1e-5) << what << ": " << a[i].first;
  }
}

class MultiNode : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, mounts and slurmd)";
    for (const char* p :
         {"munged", "slurmctld", "slurmd", "sbatch", "mpirun", "ip", "nsenter", "unshare"}) {
      if (!have_program(p))
        GTEST_SKIP() << p << " is not installed (setup.sh installs slurm-wlm, munge, iproute2)";
    }
    if (run_capture({"unshare", "--net", "true"}).status != 0) {
      GTEST_SKIP() << "no network namespace support here (`unshare --net true` fails)";
    }
    const char* root = std::getenv("M3RET_MULTINODE_DIR");
    if (!root) root = M3RET_MULTINODE_DEFAULT_DIR;
    if (under_tmp_) root = "/tmp/m3ret-tests";
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(root) / fmt::format("{}-{}", std::string(info->name()).substr(0, 12), getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    script_ = (testing::source_dir() / "slurm/local-cluster.sh").string();
    started_ = true;
    auto r = run_capture({script_, "up", "--nodes", "2", "--state", (dir_ / "c").string()});
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    // KEY=VALUE lines, SLURM_CONF last: the environment the jobs are submitted with.
    std::istringstream lines(r.out);
    std::string line, last;
    while (std::getline(lines, line)) {
      auto eq = line.find('=');
      ASSERT_NE(eq, std::string::npos) << "not KEY=VALUE: " << line;
      setenv(line.substr(0, eq).c_str(), line.substr(eq + 1).c_str(), 1);
      set_.push_back(line.substr(0, eq));
      last = line;
    }
    ASSERT_EQ(last, "SLURM_CONF=" + (dir_ / "c/slurm.conf").string());
    setenv("M3RET", testing::m3ret_binary().c_str(), 1);
    setenv("MPIEXEC", "mpirun --allow-run-as-root --bind-to none", 1);
  }

  void TearDown() override {
    if (!started_) return;
    run_capture({"scancel", "--user=root"});
    auto r = run_capture({script_, "down", "--state", (dir_ / "c").string()});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    for (const auto& k : set_) unsetenv(k.c_str());
    // Nothing of the cluster is left: no namespace, no link of its bridge.
    const std::string k = cluster_k();
    EXPECT_EQ(run_capture({"sh", "-c", "ip netns list | grep -q '^m3rc" + k + "-'"}).status, 1);
    EXPECT_NE(run_capture({"ip", "link", "show", "m3rc" + k}).status, 0);
    if (!HasFailure() && !std::getenv("M3RET_KEEP_TEST_DIRS")) fs::remove_all(dir_);
  }

  // K of the cluster's bridge m3rcK and subnet 10.213.K.0/24.
  std::string cluster_k() const {
    std::smatch m;
    const std::string env = read(dir_ / "c/env");
    return std::regex_search(env, m, std::regex("10\\.213\\.([0-9]+)\\.0/24")) ? m[1].str() : "?";
  }

  // Runs the m3ret binary here (not on the cluster); fails the test on a non-zero exit.
  void m3ret(const Args& args) {
    auto r = run_capture(Args{testing::m3ret_binary().string()} + args);
    ASSERT_EQ(r.status, 0) << shell_line(args) << "\n" << r.out << r.err;
  }

  // synth + shard (one rank, on this machine) into dir_/shards.
  void make_shards() {
    ASSERT_NO_FATAL_FAILURE(m3ret(Args{"synth", "--out", (dir_ / "data").string()} + kData));
    ASSERT_NO_FATAL_FAILURE(m3ret(Args{"shard", "--manifest", (dir_ / "data/manifest.csv").string(),
                                       "--out", (dir_ / "shards").string()} +
                                  kData));
  }

  // sbatch OPTIONS slurm/pretrain.sbatch CONFIG SHARDS RUN SETS...: the job id.
  std::string submit_pretrain(const Args& options, const fs::path& run, const Args& sets = {}) {
    Args argv = Args{"sbatch",
                     "--parsable",
                     "--time=00:20:00",
                     "--cpus-per-task=1",
                     "--output=" + (dir_ / "slurm-%j.out").string(),
                     "--chdir=" + dir_.string()} +
                options +
                Args{(testing::source_dir() / "slurm/pretrain.sbatch").string(), kData[1],
                     (dir_ / "shards").string(), run.string()};
    argv.insert(argv.end(), kTrain.begin() + 2, kTrain.end());
    argv.insert(argv.end(), sets.begin(), sets.end());
    auto r = run_capture(argv);
    EXPECT_EQ(r.status, 0) << r.err;
    std::string id = r.out.substr(0, r.out.find_first_of(";\n"));
    return id;
  }

  // The one-rank reference run in dir_/one, then a 2 x 1 pretrain job in RUN
  // with train.collective_timeout_s=TIMEOUT, waited for until it wrote its
  // first checkpoint; `id` is its job id, `rank2` the PID of its rank on
  // node2, stopped there (no step completes from here on).
  void job_at_checkpoint(const fs::path& run, int timeout, std::string& id, int& rank2) {
    ASSERT_NO_FATAL_FAILURE(make_shards());
    ASSERT_NO_FATAL_FAILURE(m3ret(Args{"train", "--shards", (dir_ / "shards").string(), "--run-dir",
                                       (dir_ / "one").string()} +
                                  kTrain));
    id = submit_pretrain({"--nodes=2", "--ntasks-per-node=1"}, run,
                         {"--set", fmt::format("train.collective_timeout_s={}", timeout)});
    ASSERT_TRUE(wait_until(300, [&] { return fs::exists(run / "checkpoints/latest"); }))
        << "no checkpoint after 300 s\n"
        << read(dir_ / ("slurm-" + id + ".out"));
    std::vector<int> ranks = node_processes(cluster_k(), 2, "m3ret");
    ASSERT_EQ(ranks.size(), 1u) << "node2 should run one m3ret rank";
    rank2 = ranks[0];
    kill(rank2, SIGSTOP);
  }

  // `scontrol show job -o ID`'s KEY=VALUE ("" when absent).
  static std::string job_field(const std::string& id, const std::string& key) {
    auto r = run_capture({"scontrol", "show", "job", "-o", id});
    std::smatch m;
    if (!std::regex_search(r.out, m, std::regex("(^| )" + key + "=(\\S*)"))) return "";
    return m[2].str();
  }

  // Waits until job `id` is in one of `states`; fails with its output otherwise.
  void wait_job(const std::string& id, const std::set<std::string>& states, double seconds = 300) {
    std::string st;
    const bool ok =
        wait_until(seconds, [&] { return states.count(st = job_field(id, "JobState")) > 0; });
    ASSERT_TRUE(ok) << "job " << id << " still " << st << " after " << seconds << " s\n"
                    << read(dir_ / ("slurm-" + id + ".out")) << "\nthe end of slurmctld.log:\n"
                    << tail(read(dir_ / "c/log/slurmctld.log"), 40);
  }

  // The encoder of RUN's latest checkpoint, read back through `m3ret export`.
  trainer::NamedTensors exported(const fs::path& run) {
    const fs::path out = run.string() + ".safetensors";
    m3ret({"export", "--checkpoint", run.string(), "--out", out.string()});
    return trainer::read_safetensors(out);
  }

  // Waits for the requeued job `id` to complete, resumed (Restarts=1) from the
  // checkpoint of step FROM, with the weights of the one-rank run dir_/one.
  void expect_completes_resumed(const std::string& id, const fs::path& run, int64_t from,
                                const std::string& what) {
    const fs::path out = dir_ / ("slurm-" + id + ".out");
    ASSERT_NO_FATAL_FAILURE(wait_job(id, {"COMPLETED", "FAILED", "CANCELLED", "NODE_FAIL"}));
    ASSERT_EQ(job_field(id, "JobState"), "COMPLETED")
        << read(out) << "\nthe end of slurmctld.log:\n"
        << tail(read(dir_ / "c/log/slurmctld.log"), 40);
    EXPECT_EQ(job_field(id, "Restarts"), "1");
    EXPECT_NE(read(out).find(fmt::format("(step {})", from)), std::string::npos)
        << "not resumed from step " << from << ":\n"
        << read(out);
    expect_same_weights(exported(dir_ / "one"), exported(run), what);
  }

  bool under_tmp_ = false;  // the state folder (and the test's files) under /tmp
  fs::path dir_;
  std::string script_;
  std::vector<std::string> set_;
  bool started_ = false;
};

// What rank r's log says of it: "rank R/W (local L/LW) on host H".
struct RankPlace {
  int world = -1, local = -1, local_world = -1;
  std::string host;
};
RankPlace rank_place(const fs::path& run, int r) {
  const std::string text = read(run / "logs" / fmt::format("rank-{}.log", r));
  std::smatch m;
  RankPlace p;
  if (std::regex_search(
          text, m,
          std::regex("rank [0-9]+/([0-9]+) \\(local ([0-9]+)/([0-9]+)\\) on host (\\S+),"))) {
    p = {std::stoi(m[1]), std::stoi(m[2]), std::stoi(m[3]), m[4].str()};
  }
  return p;
}

class MultiNodeUnderTmp : public MultiNode {
 protected:
  void SetUp() override {
    under_tmp_ = true;
    MultiNode::SetUp();
  }
};

// A cluster whose state folder is under /tmp (a checkout there): the folder of
// /tmp that holds it is shared with the nodes, the rest of /tmp is theirs.
TEST_F(MultiNodeUnderTmp, TheFolderOfTmpHoldingTheStateIsSharedAndTheRestIsTheNodes) {
  ASSERT_EQ(dir_.string().rfind("/tmp/m3ret-tests/", 0), 0u) << dir_;
  { std::ofstream(dir_ / "marker") << "shared\n"; }
  const std::string private_file = fmt::format("/tmp/m3ret-node-private-{}", getpid());
  auto r = run_capture(
      {"sbatch", "--parsable", "--nodes=1", "--nodelist=node2",
       "--output=" + (dir_ / "slurm-%j.out").string(), "--chdir=" + dir_.string(), "--wrap",
       "cat " + (dir_ / "marker").string() + " > " + (dir_ / "seen").string() + " && hostname >> " +
           (dir_ / "seen").string() + " && touch " + private_file});
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string id = r.out.substr(0, r.out.find_first_of(";\n"));
  ASSERT_NO_FATAL_FAILURE(wait_job(id, {"COMPLETED", "FAILED", "CANCELLED", "NODE_FAIL"}, 120));
  EXPECT_EQ(job_field(id, "JobState"), "COMPLETED") << read(dir_ / ("slurm-" + id + ".out"));
  EXPECT_EQ(read(dir_ / "seen"), "shared\nnode2\n");
  EXPECT_FALSE(fs::exists(private_file)) << "the node's /tmp is the machine's";
  fs::remove(private_file);
}

TEST_F(MultiNode, TwoNodesOfOneAndOfTwoRanksTrainTheWeightsOfOneRank) {
  ASSERT_NO_FATAL_FAILURE(make_shards());
  // The reference: one rank on this machine.
  ASSERT_NO_FATAL_FAILURE(m3ret(
      Args{"train", "--shards", (dir_ / "shards").string(), "--run-dir", (dir_ / "one").string()} +
      kTrain));
  // Both jobs at once; 2 x 2 waits for 2 x 1 where the nodes' 2 CPUs are taken.
  const std::string a = submit_pretrain({"--nodes=2", "--ntasks-per-node=1"}, dir_ / "two");
  const std::string b = submit_pretrain({"--nodes=2", "--ntasks-per-node=2"}, dir_ / "four");
  ASSERT_NO_FATAL_FAILURE(
      wait_job(a, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"}));
  ASSERT_NO_FATAL_FAILURE(
      wait_job(b, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"}));
  for (const auto& [id, run, per_node] :
       {std::tuple{a, dir_ / "two", 1}, std::tuple{b, dir_ / "four", 2}}) {
    ASSERT_EQ(job_field(id, "JobState"), "COMPLETED") << read(dir_ / ("slurm-" + id + ".out"));
    EXPECT_EQ(job_field(id, "NodeList"), "node[1-2]");
    // Ranks r*per_node.. on node r+1, local ranks 0..per_node-1 there.
    for (int r = 0; r < 2 * per_node; ++r) {
      const RankPlace p = rank_place(run, r);
      EXPECT_EQ(p.world, 2 * per_node) << run << " rank " << r;
      EXPECT_EQ(p.local, r % per_node) << run << " rank " << r;
      EXPECT_EQ(p.local_world, per_node) << run << " rank " << r;
      EXPECT_EQ(p.host, fmt::format("node{}", 1 + r / per_node)) << run << " rank " << r;
    }
  }
  const auto one = exported(dir_ / "one");
  expect_same_weights(one, exported(dir_ / "two"), "2 nodes x 1 rank vs 1 rank");
  expect_same_weights(one, exported(dir_ / "four"), "2 nodes x 2 ranks vs 1 rank");
}

// A node lost mid-run: once the job wrote its first checkpoint, node2's rank
// is stopped (so that no step completes past that point) and killed, as a
// crashed host's would be. Open MPI ends the job at once, naming the rank and
// the node, well within the collective timeout; the job, requeued, resumes
// from the checkpoint and ends with the weights of an uninterrupted run.
TEST_F(MultiNode, LostNodeEndsTheJobNamingTheRankAndTheRequeuedJobResumes) {
  const fs::path run = dir_ / "two";
  constexpr int kTimeout = 60;  // train.collective_timeout_s
  std::string id;
  int rank2 = 0;
  ASSERT_NO_FATAL_FAILURE(job_at_checkpoint(run, kTimeout, id, rank2));
  const fs::path out = dir_ / ("slurm-" + id + ".out");
  kill(rank2, SIGKILL);
  ASSERT_NO_FATAL_FAILURE(
      wait_job(id, {"FAILED", "COMPLETED", "CANCELLED", "NODE_FAIL"}, kTimeout));
  const std::string text = read(out);
  ASSERT_EQ(job_field(id, "JobState"), "FAILED") << text;
  EXPECT_TRUE(std::regex_search(
      text, std::regex("process rank 1 with PID [0-9]+ on node node2 exited on signal 9")))
      << text;
  // The newest checkpoint when the node was lost, before the last step.
  const std::string latest = read(run / "checkpoints/latest");
  ASSERT_NE(latest.find("step-"), std::string::npos) << latest;
  const int64_t resumed_from = std::stoll(latest.substr(latest.find("step-") + 5));
  ASSERT_LT(resumed_from, 4) << "the run ended before node2 was lost";

  auto r = run_capture({"scontrol", "requeue", id});
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_NO_FATAL_FAILURE(wait_job(id, {"PENDING", "RUNNING", "COMPLETING", "COMPLETED"}, 30));
  expect_completes_resumed(id, run, resumed_from, "lost node, requeued vs 1 rank");
}

// A node cut off mid-run: once the job wrote its first checkpoint, node2's
// rank is stopped (no step completes past that point), node2's link is set
// down (the host side of its veth pair) and the rank continues, its peer out
// of reach. Rank 0's collective times out and says so, naming the rank and
// the step. mpirun cannot finish the abort without node2 (it would wait until
// Slurm declares node2 lost), but the rank's message also went to the file
// the template watches: the template ends the job step and requeues the job,
// and node1 is released before Slurm marks node2 down. Once the link is up
// again, nothing of the job is left on node2, node2 serves again, and the job
// resumes from the checkpoint and ends with the weights of an uninterrupted
// run.
TEST_F(MultiNode, CutLinkTimesOutNamingTheRankAndTheRequeuedJobResumes) {
  const fs::path run = dir_ / "two";
  constexpr int kTimeout = 20;  // train.collective_timeout_s
  std::string id;
  int rank2 = 0;
  ASSERT_NO_FATAL_FAILURE(job_at_checkpoint(run, kTimeout, id, rank2));
  const fs::path out = dir_ / ("slurm-" + id + ".out");
  const std::string k = cluster_k();
  const std::string link = "m3rc" + k + "v2";
  auto r = run_capture({"ip", "link", "set", link, "down"});
  ASSERT_EQ(r.status, 0) << r.err;
  kill(rank2, SIGCONT);
  const auto cut = std::chrono::steady_clock::now();
  auto since_cut = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - cut).count();
  };
  // A rank gives up after the timeout, naming itself and the step: rank 0
  // (node1) through mpirun's output, or rank 1 (node2, cut off) through its
  // log, which the template reads. Which one is first depends on when each
  // entered its collective: rank 1 was stopped inside its step, up to a few
  // seconds before the cut.
  const std::regex timed_out(fmt::format(
      "m3ret: collective [a-z]+ timed out after {0}\\.0 s at step [0-9]+ on rank 0 of 2|"
      "m3ret-pretrain: collective [a-z]+ timed out after {0}\\.0 s at step [0-9]+ on rank 1 of 2",
      kTimeout));
  ASSERT_TRUE(wait_until(kTimeout + 15, [&] { return std::regex_search(read(out), timed_out); }))
      << "no collective timeout message " << since_cut() << " s after the cut\n"
      << read(out);
  EXPECT_GE(since_cut(), kTimeout - 5) << "timed out before the timeout";
  // The template ends the step on the timeout, naming the rank, and requeues
  // the job: its processes end and node1 is released at once, while Slurm
  // keeps the job COMPLETING on node2 until it declares node2 lost
  // (SlurmdTimeout, 30 s in local-cluster.sh); then it waits for two nodes.
  const double timeout_seen = since_cut();
  ASSERT_NO_FATAL_FAILURE(
      wait_job(id, {"COMPLETING", "PENDING", "FAILED", "COMPLETED", "CANCELLED"}, 60));
  for (const char* name : {"m3ret", "mpirun", "srun", "slurm_script", "slurmstepd"}) {
    EXPECT_TRUE(wait_until(30, [&] { return node_processes(k, 1, name).empty(); }))
        << name << " left on node1";
  }
  auto node_state = [](const std::string& node) {
    return run_capture({"sinfo", "-h", "-n", node, "-o", "%T"}).out;
  };
  ASSERT_TRUE(wait_until(30, [&] { return node_state("node1") == "idle\n"; }))
      << "node1 is " << node_state("node1");
  const double released = since_cut();
  // Node1 was released before Slurm marked node2 down: the template ended the
  // job, not Slurm's node failure.
  EXPECT_EQ(node_state("node2").find("down"), std::string::npos) << node_state("node2");
  ASSERT_NO_FATAL_FAILURE(wait_job(id, {"PENDING", "FAILED", "COMPLETED", "CANCELLED"}, 90));
  std::printf(
      "cut link: rank 0's timeout message %.1f s, node1 released %.1f s, the job pending %.1f s "
      "after the cut\n",
      timeout_seen, released, since_cut());
  const std::string text = read(out);
  ASSERT_EQ(job_field(id, "JobState"), "PENDING") << text;
  EXPECT_TRUE(std::regex_search(
      text, std::regex(fmt::format("m3ret-pretrain: collective [a-z]+ timed out after {}\\.0 s at "
                                   "step [0-9]+ on rank [01] of 2; ending the job step .* and "
                                   "requeueing job {}\n",
                                   kTimeout, id))))
      << text;
  EXPECT_EQ(text.find("DUE TO NODE FAILURE"), std::string::npos) << text;
  EXPECT_EQ(read(dir_ / "c/log/slurmctld.log").find("due to failure of node"), std::string::npos);
  EXPECT_EQ(job_field(id, "Restarts"), "1");
  const std::string latest = read(run / "checkpoints/latest");
  ASSERT_NE(latest.find("step-"), std::string::npos) << latest;
  const int64_t resumed_from = std::stoll(latest.substr(latest.find("step-") + 5));
  ASSERT_LT(resumed_from, 4) << "the run ended before node2 was cut off";

  // The link back: node2's rank and Open MPI daemon are gone (the rank timed
  // out too and aborted through its local daemon), but its step ends only when
  // node2's slurmd hears of the requeue, and Slurm keeps the node DOWN ("Not
  // responding") until it answers again. Slurm 22.05 returns node2 to service
  // as soon as it answers, before that step has ended; the requeued job keeps
  // its id, so the step's clean-up then kills the new run's step on node2
  // (slurmctld: "step_partial_comp: JobId=1 StepID=0 invalid", then Open MPI
  // loses its daemon there). As an administrator would, the test holds the job
  // until node2 is clean.
  r = run_capture({"scontrol", "hold", id});
  ASSERT_EQ(r.status, 0) << r.err;
  r = run_capture({"ip", "link", "set", link, "up"});
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* name : {"m3ret", "orted", "slurmstepd"}) {
    EXPECT_TRUE(wait_until(60, [&] { return node_processes(k, 2, name).empty(); }))
        << name << " left on node2";
  }
  // Slurm returns node2 to service (ReturnToService=2) when it answers its
  // next ping; a node still DOWN is resumed by hand, as an administrator would.
  std::string node2;
  EXPECT_TRUE(wait_until(60,
                         [&] {
                           node2 = run_capture({"sinfo", "-h", "-n", "node2", "-o", "%T"}).out;
                           if (node2.find("down") != std::string::npos)
                             run_capture({"scontrol", "update", "nodename=node2", "state=resume"});
                           return node2 == "idle\n" || node2 == "allocated\n" || node2 == "mixed\n";
                         }))
      << "node2 is " << node2;
  r = run_capture({"scontrol", "release", id});
  ASSERT_EQ(r.status, 0) << r.err;
  expect_completes_resumed(id, run, resumed_from, "cut link, requeued vs 1 rank");
}

// configs/sweeps/tiny.toml through the Slurm backend: every run succeeds, and
// its jobs ran on both nodes (the partition schedules to the least loaded).
TEST_F(MultiNode, OrchestrateRunsTheTinySweepOverBothNodes) {
  const fs::path sweep = testing::source_dir() / "configs/sweeps/tiny.toml";
  auto r = run_capture(
      {"sh", "-c",
       "cd " + shell_line({dir_.string()}) + " && exec " +
           shell_line({testing::m3ret_binary().string(), "orchestrate", "--sweep", sweep.string(),
                       "--backend", "slurm", "--no-server", "--poll", "0.5"}) +
           " 2>&1"});
  ASSERT_EQ(r.status, 0) << r.out;
  orchestrator::State st(dir_ / "sweep-tiny/state.db", true);
  ASSERT_GE(st.runs().size(), 2u);
  for (const auto& run : st.runs()) EXPECT_EQ(run.state, "succeeded") << run.name;
  std::map<std::string, std::set<std::string>> nodes;  // job kind -> nodes
  for (const auto& job : st.jobs()) {
    if (job.backend_id.empty()) continue;
    std::string list = job_field(job.backend_id, "NodeList");
    EXPECT_TRUE(list == "node1" || list == "node2") << job.name << ": " << list;
    nodes[orchestrator::to_string(job.kind)].insert(list);
  }
  EXPECT_EQ(nodes["train"], (std::set<std::string>{"node1", "node2"}))
      << "train jobs all on one node";
  std::set<std::string> all;
  for (const auto& [kind, n] : nodes) all.insert(n.begin(), n.end());
  EXPECT_EQ(all, (std::set<std::string>{"node1", "node2"}));
}

}  // namespace
}  // namespace m3ret
