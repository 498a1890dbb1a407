#include "core/fork_server.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/fs.h"
#include "core/mutex.h"

namespace m3ret::fork_server {

namespace {

// Requests (client -> server) and replies, one datagram each on a SOCK_SEQPACKET socket.
struct Request {
  enum Kind : int { kSpawn = 1, kWait = 2 } kind;
  Entry entry;  // kSpawn (the same address in the server: it is a fork of this process)
  pid_t pid;    // kWait
};
struct Reply {
  int value;  // kSpawn: the child's pid, or -1; kWait: the wait status, or -1
  int error;  // errno of a failed fork or waitpid
};

// The signals a launcher sends to a whole process group: the server ignores them, its children
// take them as usual.
constexpr int kGroupSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE, SIGQUIT};

struct Client {
  Mutex mu;
  int fd M3RET_GUARDED_BY(mu) = -1;
  pid_t server M3RET_GUARDED_BY(mu) = 0;
  pid_t owner M3RET_GUARDED_BY(mu) = 0;  // the process that started it
};
Client& client() {
  static Client* c = new Client;  // never destroyed: threads may spawn during exit
  return *c;
}

bool send_all(int fd, const void* data, size_t n, const int* fds, int nfds) {
  iovec iov{const_cast<void*>(data), n};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
  if (nfds > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(static_cast<size_t>(nfds) * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(static_cast<size_t>(nfds) * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds, static_cast<size_t>(nfds) * sizeof(int));
  }
  for (;;) {
    const ssize_t r = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    return r == static_cast<ssize_t>(n);
  }
}

// Receives one datagram of exactly `n` bytes and up to two descriptors (-1 where absent).
bool recv_all(int fd, void* data, size_t n, int* fds) {
  iovec iov{data, n};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t r;
  do {
    r = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (r < 0 && errno == EINTR);
  if (fds) fds[0] = fds[1] = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int got[2] = {-1, -1};
    std::memcpy(got, CMSG_DATA(c), std::min<size_t>(count, 2) * sizeof(int));
    for (size_t i = 0; i < count && i < 2; ++i) {
      if (fds)
        fds[i] = got[i];
      else
        ::close(got[i]);
    }
  }
  return r == static_cast<ssize_t>(n);
}

// The bytes of memfd `fd` (the arguments of a spawn).
bool read_args(int fd, std::string& out) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t r = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += static_cast<size_t>(r);
  }
  return true;
}

[[noreturn]] void serve(int sock, pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(0);
  ::prctl(PR_SET_NAME, "m3ret-forksrv");
  // A launcher's signals to the process group (Slurm's SIGTERM, a terminal's SIGINT) are for
  // the process that started the server: the server ends with it (PDEATHSIG, or its socket's
  // end), and its children with the server.
  for (int sig : kGroupSignals) ::signal(sig, SIG_IGN);
  fs::close_descriptors_except(sock);
  const pid_t self = ::getpid();
  for (;;) {
    Request req{};
    int fds[2];
    if (!recv_all(sock, &req, sizeof(req), fds)) ::_exit(0);  // the process has ended
    Reply rep{-1, 0};
    if (req.kind == Request::kSpawn && fds[0] >= 0 && fds[1] >= 0) {
      const pid_t child = ::fork();
      if (child == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != self) ::_exit(1);
        for (int sig : kGroupSignals) ::signal(sig, SIG_DFL);
        std::string args;
        if (!read_args(fds[0], args)) ::_exit(1);
        fs::close_descriptors_except(fds[1]);  // the arguments, the socket, other requests'
        req.entry(fds[1], args);
        ::_exit(1);  // entry() must not return
      }
      rep = {child, child < 0 ? errno : 0};
    } else if (req.kind == Request::kWait) {
      int status = 0;
      pid_t r;
      do {
        r = ::waitpid(req.pid, &status, 0);
      } while (r < 0 && errno == EINTR);
      rep = {r == req.pid ? status : -1, r < 0 ? errno : 0};
    }
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
    if (!send_all(sock, &rep, sizeof(rep), nullptr, 0)) ::_exit(0);
  }
}

// One request and its reply; false (and the server forgotten) when it is gone.
bool exchange(Client& c, const Request& req, const int* fds, int nfds, Reply& rep)
    M3RET_REQUIRES(c.mu) {
  if (send_all(c.fd, &req, sizeof(req), fds, nfds) && recv_all(c.fd, &rep, sizeof(rep), nullptr))
    return true;
  ::close(c.fd);
  c.fd = -1;
  c.server = 0;
  return false;
}

}  // namespace

void start() {
  Client& c = client();
  MutexLock lock(c.mu);
  if (c.fd >= 0 && c.owner == ::getpid()) return;
  if (c.fd >= 0) ::close(c.fd);  // a forked copy's end of its parent's server: not its own
  c.fd = -1;
  c.server = 0;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return;
  const pid_t parent = ::getpid();
  const pid_t server = ::fork();
  if (server == 0) {
    ::close(sv[0]);
    serve(sv[1], parent);
  }
  ::close(sv[1]);
  if (server < 0) {
    ::close(sv[0]);
    return;
  }
  c.fd = sv[0];
  c.server = server;
  c.owner = parent;
}

pid_t pid() {
  Client& c = client();
  MutexLock lock(c.mu);
  return c.fd >= 0 && c.owner == ::getpid() ? c.server : 0;
}

pid_t spawn(Entry entry, const std::string& args, int fd) {
  const int args_fd = ::memfd_create("m3ret-fork-args", MFD_CLOEXEC);
  if (args_fd < 0) return -1;
  if (!fs::write_all(args_fd, args.data(), args.size())) {
    const int err = errno;
    ::close(args_fd);
    errno = err;
    return -1;
  }
  Client& c = client();
  Reply rep{-1, 0};
  {
    MutexLock lock(c.mu);
    if (c.fd < 0 || c.owner != ::getpid()) {
      ::close(args_fd);
      return -1;
    }
    const int fds[2] = {args_fd, fd};
    if (!exchange(c, Request{Request::kSpawn, entry, 0}, fds, 2, rep)) rep = {-1, EPIPE};
  }
  ::close(args_fd);
  if (rep.value < 0) errno = rep.error;
  return rep.value;
}

int wait(pid_t pid) {
  Client& c = client();
  MutexLock lock(c.mu);
  if (c.fd < 0 || c.owner != ::getpid()) return -1;
  Reply rep{-1, 0};
  if (!exchange(c, Request{Request::kWait, nullptr, pid}, nullptr, 0, rep)) return -1;
  return rep.value;
}

}  // namespace m3ret::fork_server
