// The status server's request handling (launcher/orchestrator/http_server.h): each input is the
// raw bytes a client sends on one connection to a real HttpServer on loopback (the server's own
// Beast parser, limits and connection handling, then make_status_handler's routes over a state
// with two runs, a report folder and an evaluation report). The client then closes its sending
// side and reads until the server closes: every input must be answered or dropped, never crash
// or hang the server (a read that waits 20 s aborts, so libFuzzer records the input).
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "fuzz_util.h"
#include "launcher/orchestrator/http_server.h"
#include "launcher/orchestrator/state.h"

namespace {

namespace orch = m3ret::orchestrator;

uint16_t g_port = 0;

// The state, report and evaluation files the routes read, under the scratch folder.
void start_server() {
  const auto work = m3ret::fuzz::scratch_dir() / "work";
  std::filesystem::create_directories(work / "report");
  std::filesystem::create_directories(work / "evals/r000-seed=1/step-000000006");
  std::ofstream(work / "report/scaling.csv") << "run,state\nr000-seed=1,succeeded\n";
  std::ofstream(work / "evals/r000-seed=1/step-000000006/report.json") << "{}\n";
  // Never destroyed: the server's thread serves until the process ends.
  auto* state = new orch::State(work / "state.db");
  for (const char* name : {"r000-seed=1", "r001-seed=2"})
    state->upsert_run({name, R"({"train.seed": 1})", 1.0, (work / name).string(), "", {}, 0});
  auto* server = new orch::HttpServer(
      0, orch::make_status_handler(*state, nullptr, "sekret", (work / "report").string()));
  g_port = server->port();
}

// connect(), finished when a signal (libFuzzer's timers) interrupts it.
bool connect_retrying(int fd, const sockaddr_in& addr) {
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return true;
  if (errno != EINTR) return false;
  pollfd p{fd, POLLOUT, 0};
  while (::poll(&p, 1, -1) < 0)
    if (errno != EINTR) return false;
  int err = 0;
  socklen_t len = sizeof err;
  return ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  start_server();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(g_port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{20, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (fd < 0 || !connect_retrying(fd, addr)) {
    std::perror("fuzz_http: connect");
    std::abort();
  }
  for (size_t sent = 0; sent < size;) {  // the server may answer and close before reading all
    const ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0 || (n < 0 && errno == EINTR)) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      std::fprintf(stderr, "fuzz finding: the server neither answered nor closed in 20 s\n");
      std::abort();
    }
    break;  // closed (or reset)
  }
  ::close(fd);
  return 0;
}
