// data/isolate.h: untrusted work in a forked child.
#include "data/isolate.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "core/error.h"
#include "core/fork_server.h"
#include "test_util.h"

namespace m3ret {
namespace {

// Whether process `pid` has ended (gone, or a zombie its new parent has not reaped).
bool ended(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string id, comm, state;
  return !(stat >> id >> comm >> state) || state == "Z";
}

std::string decoded(const std::string& args) { return "decoded " + args; }
std::string crash(const std::string&) { ::abort(); }
// Returns the pid of the process it runs in and of its parent.
std::string pids(const std::string&) {
  return std::to_string(::getpid()) + " " + std::to_string(::getppid());
}
// Writes its pid to the file `args` names (atomically), then waits forever.
std::string spin(const std::string& pid_file) {
  std::ofstream(pid_file + ".tmp") << ::getpid();
  std::rename((pid_file + ".tmp").c_str(), pid_file.c_str());
  for (;;) ::pause();
}

TEST(Isolate, ReturnsTheResultAndNamesTheInputOfAChildThatCrashed) {
  data::isolate::Limits limits;
  limits.timeout_s = 30;
  EXPECT_EQ(data::isolate::run("in.bin", decoded, "bytes", limits), "decoded bytes");
  try {
    data::isolate::run("in.bin", crash, "", limits);
    ADD_FAILURE() << "a crashed child returned";
  } catch (const InputError& e) {
    EXPECT_EQ(e.path(), "in.bin");
    EXPECT_NE(e.reason().find("the decoder crashed (Aborted)"), std::string::npos) << e.reason();
  }
}

TEST(Isolate, PackedArgumentsComeBackWhole) {
  const std::vector<std::string> parts{"", std::string("a\0b", 3), std::string(70000, 'x')};
  EXPECT_EQ(data::isolate::unpack(data::isolate::pack(parts)), parts);
  EXPECT_TRUE(data::isolate::unpack("").empty());
  EXPECT_THROW(data::isolate::unpack(data::isolate::pack(parts).substr(0, 20)), Error);
}

// The test binaries start a fork server as m3ret does (tests/test_main.cc): the children are
// its, not this multi-threaded process's.
TEST(Isolate, ChildrenAreForkedByTheForkServer) {
  const pid_t server = fork_server::pid();
  ASSERT_GT(server, 0) << "no fork server";
  std::istringstream in(data::isolate::run("in.bin", pids, "", data::isolate::Limits{}));
  pid_t child = 0, parent = 0;
  in >> child >> parent;
  EXPECT_EQ(parent, server);
  EXPECT_NE(child, ::getpid());
  std::string comm;
  std::getline(std::ifstream("/proc/" + std::to_string(server) + "/comm"), comm);
  EXPECT_EQ(comm, "m3ret-forksrv");
}

// A decoder that spins in its child is not left running when the process that started it is
// killed (a rank killed by mpirun or Slurm): the child dies with it. With a fork server (the
// child is the server's, which dies with the process) and without one (a forked copy of a
// process has none: it forks the child itself).
void expect_child_dies_with_its_process(bool with_server) {
  testing::TempDir dir("isolate");
  const auto pid_file = dir / "child.pid";
  const pid_t parent = ::fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    if (with_server) fork_server::start();
    if ((fork_server::pid() > 0) != with_server) ::_exit(3);
    data::isolate::Limits limits;
    limits.timeout_s = 600;
    data::isolate::run("spin.bin", spin, pid_file.string(), limits);
    ::_exit(0);
  }
  std::string text;
  for (int i = 0; i < 1000 && text.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::ifstream in(pid_file);
    std::getline(in, text);
  }
  if (text.empty()) {
    int status = 0;
    ::kill(parent, SIGKILL);
    ::waitpid(parent, &status, 0);
    FAIL() << "the child never started (" << (WIFEXITED(status) ? WEXITSTATUS(status) : -1) << ")";
  }
  const pid_t child = std::stoi(text);
  ::kill(parent, SIGKILL);
  ::waitpid(parent, nullptr, 0);
  bool gone = false;
  for (int i = 0; i < 500 && !(gone = ended(child)); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(gone) << "the child " << child << " outlived the process that started it";
  if (!gone) ::kill(child, SIGKILL);
}

TEST(Isolate, AChildDiesWithTheProcessThatStartedIt) {
  expect_child_dies_with_its_process(true);
  expect_child_dies_with_its_process(false);
}

// A process whose fork server died (killed, out of memory) goes on: it forks its children
// itself.
TEST(Isolate, AProcessWhoseForkServerDiedForksItsChildrenItself) {
  const pid_t copy = ::fork();
  ASSERT_GE(copy, 0);
  if (copy == 0) {
    fork_server::start();
    const pid_t server = fork_server::pid();
    if (server <= 0) ::_exit(3);
    ::kill(server, SIGKILL);
    ::waitpid(server, nullptr, 0);
    std::string result;
    try {
      result = data::isolate::run("in.bin", pids, "", data::isolate::Limits{});
    } catch (...) {
      ::_exit(4);
    }
    std::istringstream in(result);
    pid_t child = 0, parent = 0;
    in >> child >> parent;
    ::_exit(parent == ::getpid() && fork_server::pid() == 0 ? 0 : 5);
  }
  int status = 0;
  ::waitpid(copy, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: no server, 4: run() threw, 5: not forked by itself";
}

}  // namespace
}  // namespace m3ret
