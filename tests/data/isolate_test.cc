// data/isolate.h: untrusted work in a forked child.
#include "data/isolate.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "core/error.h"
#include "test_util.h"

namespace m3ret {
namespace {

// Whether process `pid` has ended (gone, or a zombie its new parent has not reaped).
bool ended(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string id, comm, state;
  return !(stat >> id >> comm >> state) || state == "Z";
}

TEST(Isolate, ReturnsTheResultAndNamesTheInputOfAChildThatCrashed) {
  data::isolate::Limits limits;
  limits.timeout_s = 30;
  EXPECT_EQ(data::isolate::run(
                "in.bin", [] { return std::string("decoded"); }, limits),
            "decoded");
  try {
    data::isolate::run(
        "in.bin", []() -> std::string { ::abort(); }, limits);
    ADD_FAILURE() << "a crashed child returned";
  } catch (const InputError& e) {
    EXPECT_EQ(e.path(), "in.bin");
    EXPECT_NE(e.reason().find("the decoder crashed"), std::string::npos) << e.reason();
  }
}

// A decoder that spins in its child is not left running when the process that started it is
// killed (a rank killed by mpirun or Slurm): the child dies with it.
TEST(Isolate, AChildDiesWithTheProcessThatStartedIt) {
  testing::TempDir dir("isolate");
  const auto pid_file = dir / "child.pid";
  const pid_t parent = ::fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    data::isolate::Limits limits;
    limits.timeout_s = 600;
    data::isolate::run(
        "spin.bin",
        [&]() -> std::string {
          std::ofstream(pid_file.string() + ".tmp") << ::getpid();
          std::rename((pid_file.string() + ".tmp").c_str(), pid_file.c_str());
          for (;;) ::pause();
        },
        limits);
    ::_exit(0);
  }
  std::string text;
  for (int i = 0; i < 1000 && text.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::ifstream in(pid_file);
    std::getline(in, text);
  }
  ASSERT_FALSE(text.empty()) << "the child never started";
  const pid_t child = std::stoi(text);
  ::kill(parent, SIGKILL);
  ::waitpid(parent, nullptr, 0);
  bool gone = false;
  for (int i = 0; i < 500 && !(gone = ended(child)); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(gone) << "the child " << child << " outlived the process that started it";
  if (!gone) ::kill(child, SIGKILL);
}

}  // namespace
}  // namespace m3ret
