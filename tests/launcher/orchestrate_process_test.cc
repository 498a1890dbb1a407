// `m3ret orchestrate` as a real process, killed with SIGKILL again and again
// at different moments of a sweep (just after its first intent, while the
// shard job runs, right after a submission, while train jobs run, right after
// the first checkpoint is recorded, after eval jobs are submitted, ...) and
// started again each time. The jobs are real local-backend processes
// (mpiexec + tests/integration/fake_m3ret.sh through --job-binary, which logs
// every start with its job name), so the test checks what a user sees after
// the last restart: every run finished, every checkpoint evaluated exactly
// once, no job started twice, and `m3ret status --json` agrees with all that.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "launcher/orchestrator/state.h"
#include "launcher/process.h"
#include "test_util.h"

namespace m3ret {
namespace {

namespace fs = std::filesystem;
using namespace orchestrator;
using Clock = std::chrono::steady_clock;
using launcher::run_capture;

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Starts argv with stdout and stderr appended to `log` (no MPI variables of
// this test process in its environment).
pid_t spawn(const std::vector<std::string>& argv, const fs::path& log) {
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  launcher::SpawnOptions o;
  o.stdin_null = true;
  o.stdout_fd = o.stderr_fd = fd;
  pid_t pid = -1;
  try {
    pid = launcher::spawn(argv, o);
  } catch (const Error&) {
  }
  ::close(fd);
  return pid;
}

// The exit status of `pid` if it ended (reaped), nullopt while it runs.
std::optional<int> exited(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, WNOHANG) != pid) return std::nullopt;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// What the test watches in the state database (read-only, like `m3ret status`).
struct Snapshot {
  int64_t last_event = 0;
  std::vector<JobRow> jobs;
  size_t checkpoints = 0;
  bool any(JobKind kind, std::initializer_list<JobState> states) const {
    for (const auto& j : jobs) {
      if (j.kind != kind) continue;
      for (auto s : states)
        if (j.state == s) return true;
    }
    return false;
  }
};

std::optional<Snapshot> snapshot(const fs::path& db) {
  if (!fs::exists(db)) return std::nullopt;
  try {
    State st(db, /*read_only=*/true);
    Snapshot s;
    auto ev = st.events(0, 1);
    s.last_event = ev.empty() ? 0 : ev.front().id;
    s.jobs = st.jobs();
    for (const auto& r : st.runs()) s.checkpoints += st.checkpoints(r.name).size();
    return s;
  } catch (const std::exception&) {
    return std::nullopt;  // created but not yet initialised
  }
}

TEST(OrchestrateProcess, KilledWithSigkillAgainAndAgainFinishesEveryRunWithNoJobStartedTwice) {
  testing::TempDir dir("orchkill");
  const fs::path d = dir.path();
  const fs::path m3ret = testing::m3ret_binary();
  ASSERT_TRUE(fs::exists(m3ret)) << m3ret;
  const fs::path fake = testing::source_dir() / "tests/integration/fake_m3ret.sh";
  std::ofstream(d / "base.toml") << "[train]\nmax_steps = 3\ncheckpoint_every = 1\n";
  std::ofstream(d / "sweep.toml")
      << "format = \"m3ret-sweep/1\"\n[sweep]\nname = \"kill\"\nbase_config = \"base.toml\"\n"
      << "work_dir = \"" << (d / "work").string() << "\"\nmax_retries = 1\n"
      << "[axes]\n\"train.seed\" = [1, 2]\n[local]\nmax_parallel = 2\nmpiexec = \"mpiexec\"\n";
  const fs::path db = d / "work/state.db";
  const fs::path log = d / "orchestrate.log";
  setenv("FAKE_M3RET_LOG", (d / "invocations.log").c_str(), 1);
  const std::vector<std::string> argv = {
      m3ret.string(), "orchestrate", "--sweep",      (d / "sweep.toml").string(),
      "--backend",    "local",       "--job-binary", fake.string(),
      "--poll",       "0.1",         "--no-server"};

  // Each life of the orchestrator ends with SIGKILL as soon as its moment comes.
  using Moment = std::function<bool(const Snapshot& now, const Snapshot& at_start)>;
  auto grew = [](int64_t n) {
    return [n](const Snapshot& now, const Snapshot& start) {
      return now.last_event >= start.last_event + n;
    };
  };
  std::vector<std::pair<std::string, Moment>> moments = {
      {"its first intent", grew(1)},
      {"a shard job running",
       [](const Snapshot& s, const Snapshot&) {
         return s.any(JobKind::kShard, {JobState::kSubmitted, JobState::kRunning});
       }},
      {"the next event", grew(1)},
      {"a train job running",
       [](const Snapshot& s, const Snapshot&) {
         return s.any(JobKind::kTrain, {JobState::kRunning});
       }},
      {"the first checkpoint recorded",
       [](const Snapshot& s, const Snapshot&) { return s.checkpoints > 0; }},
      {"an eval job submitted",
       [](const Snapshot& s, const Snapshot&) {
         return s.any(JobKind::kEval,
                      {JobState::kIntent, JobState::kSubmitted, JobState::kRunning});
       }},
      {"two more events", grew(2)},
      {"the next event", grew(1)},
      {"three more events", grew(3)},
  };
  const auto deadline = Clock::now() + std::chrono::seconds(150);
  int kills = 0;
  bool second_refused = false;
  std::optional<int> final_status;
  for (size_t life = 0; !final_status; ++life) {
    pid_t pid = spawn(argv, log);
    ASSERT_GT(pid, 0);
    std::optional<int> status;  // once reaped
    auto ended = [&] {
      if (!status) status = exited(pid);
      return status.has_value();
    };
    const Snapshot start = snapshot(db).value_or(Snapshot{});
    if (life == 3) {
      // While one runs, a second orchestrator on the same sweep is refused.
      // (It holds STATE.lock once its pid is written there.)
      while (Clock::now() < deadline && !ended() &&
             read(fs::path(db.string() + ".lock")) != std::to_string(pid) + "\n") {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      if (!ended()) {
        auto r = run_capture({"sh", "-c", launcher::shell_line(argv) + " 2>&1"});
        EXPECT_NE(r.status, 0) << r.out;
        EXPECT_NE(r.out.find("another m3ret orchestrate (pid " + std::to_string(pid) + ")"),
                  std::string::npos)
            << r.out;
        second_refused = true;
      }
    }
    const Moment* moment = life < moments.size() ? &moments[life].second : nullptr;
    for (;;) {
      if (ended()) {
        final_status = status;
        break;
      }
      ASSERT_TRUE(Clock::now() < deadline)
          << "sweep not finished; see " << log << " and " << d / "work/jobs";
      auto now = snapshot(db);
      if (moment && now && (*moment)(*now, start)) {
        ::kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        ++kills;
        std::ofstream(log, std::ios::app)
            << "=== test: SIGKILL after " << moments[life].first << "\n";
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  ASSERT_EQ(*final_status, 0) << read(log);
  EXPECT_GE(kills, 7) << "the sweep ended before most kill moments came";
  EXPECT_TRUE(second_refused);

  // The state: every run succeeded, 3 checkpoints each, each evaluated by one
  // successful eval job; no job failed, was lost or was cancelled.
  State st(db, true);
  std::set<std::string> job_names;
  for (const auto& j : st.jobs()) {
    job_names.insert(j.name);
    EXPECT_EQ(j.state, JobState::kSucceeded) << j.name << ": " << j.reason;
  }
  for (const auto& r : st.runs()) {
    EXPECT_EQ(r.state, "succeeded") << r.name;
    auto cks = st.checkpoints(r.name);
    EXPECT_EQ(cks.size(), 3u) << r.name;
    for (const auto& [step, path] : cks) {
      int eval_jobs = 0;
      for (const auto& j : st.jobs(r.name)) eval_jobs += j.kind == JobKind::kEval && j.step == step;
      EXPECT_EQ(eval_jobs, 1) << r.name << " step " << step;
    }
  }
  // The processes: every job started its verbs exactly once.
  std::map<std::string, int> starts;  // "job verb" -> count
  std::map<std::string, int> eval_outputs;
  std::ifstream inv(d / "invocations.log");
  for (std::string line; std::getline(inv, line);) {
    auto bar = line.find(" | job=");
    ASSERT_NE(bar, std::string::npos) << line;
    std::string job = line.substr(bar + 7), verb = line.substr(0, line.find(' '));
    EXPECT_TRUE(job_names.count(job)) << "a process of an unknown job: " << line;
    ++starts[job + " " + verb];
    if (verb == "eval") ++eval_outputs[line.substr(line.find("--out "), bar - line.find("--out "))];
  }
  for (const auto& [key, n] : starts) EXPECT_EQ(n, 1) << key << " started " << n << " times";
  // data (synth), shard, 2 x train, 6 x (embed + eval)
  EXPECT_EQ(starts.size(), 1u + 1u + 2u + 12u);
  EXPECT_EQ(eval_outputs.size(), 6u);

  // `m3ret status --json` reads the same state.
  auto status = run_capture({m3ret.string(), "status", "--state", db.string(), "--json"});
  ASSERT_EQ(status.status, 0) << status.err;
  auto j = nlohmann::json::parse(status.out);
  ASSERT_EQ(j["runs"].size(), 2u);
  for (const auto& r : j["runs"]) {
    EXPECT_EQ(r["state"], "succeeded") << r.dump();
    EXPECT_EQ(r["checkpoints"], 3);
    EXPECT_EQ(r["evaluated"], 3);
    EXPECT_EQ(r["last_step"], 3);
    EXPECT_DOUBLE_EQ(r["final"]["mean"]["recall@1"].get<double>(), 0.375);
  }
  EXPECT_EQ(j["jobs"].size(), job_names.size());
  for (const auto& job : j["jobs"]) EXPECT_EQ(job["state"], "succeeded") << job.dump();
}

// A one-run sweep of the fake m3ret in `d` (work folder d/work).
std::vector<std::string> small_sweep(const fs::path& d, const std::vector<std::string>& extra) {
  std::ofstream(d / "base.toml") << "[train]\nmax_steps = 3\ncheckpoint_every = 1\n";
  std::ofstream(d / "sweep.toml")
      << "format = \"m3ret-sweep/1\"\n[sweep]\nname = \"small\"\nbase_config = \"base.toml\"\n"
      << "work_dir = \"" << (d / "work").string() << "\"\nmax_retries = 1\n"
      << "[local]\nmax_parallel = 2\nmpiexec = \"mpiexec\"\n";
  std::vector<std::string> argv = {
      testing::m3ret_binary().string(),
      "orchestrate",
      "--sweep",
      (d / "sweep.toml").string(),
      "--backend",
      "local",
      "--job-binary",
      (testing::source_dir() / "tests/integration/fake_m3ret.sh").string(),
      "--poll",
      "0.1"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

// A TCP connection to 127.0.0.1:port that sends nothing (-1 if refused).
int idle_connection(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
  if (fd >= 0) ::close(fd);
  return -1;
}

// Sends one request on a fresh connection and returns the whole answer.
std::string http_get(uint16_t port, const std::string& path) {
  int fd = idle_connection(port);
  if (fd < 0) return "";
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  if (::write(fd, req.data(), req.size()) < 0) {
    ::close(fd);
    return "";
  }
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

TEST(OrchestrateProcess, IdleConnectionsNeitherStarveTheStatusServerNorFailTheSweep) {
  // The orchestrator runs with 160 descriptors; the test keeps 300 idle
  // connections to its status port open (replacing each one it closes) for
  // the whole sweep. The server keeps answering, no job is read as lost.
  testing::TempDir dir("orchidle");
  const fs::path d = dir.path();
  auto argv = small_sweep(d, {"--port", "0"});
  setenv("FAKE_M3RET_LOG", (d / "invocations.log").c_str(), 1);
  pid_t pid = spawn({"/bin/sh", "-c", "ulimit -n 160 && exec " + launcher::shell_line(argv)},
                    d / "orch.log");
  ASSERT_GT(pid, 0);
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  std::optional<int> status;
  uint16_t port = 0;
  while (!(status = exited(pid)) && Clock::now() < deadline &&
         (port = static_cast<uint16_t>(std::atoi(read(d / "work/port").c_str()))) == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_FALSE(status) << read(d / "orch.log");
  ASSERT_NE(port, 0);
  std::vector<pollfd> idle;
  bool answered = false;
  while (!(status = exited(pid))) {
    ASSERT_TRUE(Clock::now() < deadline) << "sweep not finished; see " << d / "orch.log";
    for (auto& p : idle) p.revents = 0;
    ::poll(idle.data(), idle.size(), 0);
    for (auto& p : idle) {
      if (p.revents == 0) continue;  // still open and silent
      ::close(p.fd);
      p.fd = idle_connection(port);
    }
    while (idle.size() < 300) idle.push_back({idle_connection(port), POLLIN | POLLRDHUP, 0});
    if (!answered) {
      auto r = http_get(port, "/api/status");
      ASSERT_EQ(r.substr(0, 12), "HTTP/1.1 200") << r;
      answered = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& p : idle)
    if (p.fd >= 0) ::close(p.fd);
  EXPECT_TRUE(answered);
  ASSERT_EQ(*status, 0) << read(d / "orch.log");
  State st(d / "work/state.db", true);
  for (const auto& j : st.jobs())
    EXPECT_EQ(j.state, JobState::kSucceeded) << j.name << ": " << j.reason;
  for (const auto& r : st.runs()) EXPECT_EQ(r.state, "succeeded") << r.name;
}

TEST(OrchestrateProcess, RetryFailedRevivesAFinishedSweepsFailedRuns) {
  testing::TempDir dir("orchretry");
  const fs::path d = dir.path();
  auto argv = small_sweep(d, {"--no-server"});
  setenv("FAKE_M3RET_LOG", (d / "invocations.log").c_str(), 1);
  // Every eval fails: after its retries the run fails and orchestrate exits 1.
  setenv("FAKE_M3RET_FAIL", "eval", 1);
  auto r = run_capture(argv);
  unsetenv("FAKE_M3RET_FAIL");
  ASSERT_EQ(r.status, 1) << r.err;
  {
    State st(d / "work/state.db", true);
    ASSERT_EQ(st.runs().at(0).state, "failed");
  }
  // Without the flag a restart says so at once, and how to go on.
  r = run_capture(argv);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--retry-failed"), std::string::npos) << r.err;
  // With it, the run gets its retry budget back and finishes.
  argv.push_back("--retry-failed");
  r = run_capture(argv);
  ASSERT_EQ(r.status, 0) << r.err;
  State st(d / "work/state.db", true);
  EXPECT_EQ(st.runs().at(0).state, "succeeded");
  EXPECT_EQ(st.evaluations(st.runs().at(0).name).empty(), false);
}

}  // namespace
}  // namespace m3ret
