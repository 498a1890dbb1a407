// The status server: HTTP/1.1 on loopback (Boost.Beast, one Asio thread).
//
//   GET  /                       HTML page: runs, scaling table, plots, jobs, events
//   GET  /api/status             JSON (status_json)
//   GET  /report/NAME            scaling.csv, scaling.md or one of the SVGs
//   POST /api/runs/RUN/cancel    needs "Authorization: Bearer TOKEN"
//   POST /api/runs/RUN/retry     needs "Authorization: Bearer TOKEN"
//
// Errors are answered, never fatal: 400 malformed request, 401 missing or
// wrong token, 404 unknown path or run, 405 wrong method, 409 refused action,
// 413 body or header too large. A client has 10 s (idle_timeout) to send a
// whole request and read the answer, then it is dropped. At most
// max_connections are open at once (fewer when RLIMIT_NOFILE is low: kFdReserve
// descriptors always stay free for the orchestrator's own files and jobs);
// when a new client comes at the cap, the connection that has waited longest
// for a request is closed to make room, so idle clients can neither starve a
// real request nor exhaust the process's descriptors. Every socket is
// close-on-exec (jobs never inherit the port). Handlers run on the server's
// thread; make_status_handler's read the state and act on runs through the
// orchestrator's own lock (Orchestrator::with_state, cancel_run, retry_run),
// so the orchestrator may step on another thread meanwhile.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace m3ret::orchestrator {

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// Handles one request (method, target, Authorization header value, body).
using HttpHandler = std::function<HttpResponse(const std::string& method, const std::string& target,
                                               const std::string& authorization)>;

// File descriptors the server leaves free below the soft RLIMIT_NOFILE.
inline constexpr size_t kFdReserve = 64;

struct HttpServerOptions {
  size_t max_connections = 64;
  std::chrono::milliseconds idle_timeout{10000};
};

class HttpServer {
 public:
  // Listens on 127.0.0.1:port (0 = any free port) and serves on a thread
  // until destroyed. Throws m3ret::Error when the port cannot be bound.
  HttpServer(uint16_t port, HttpHandler handler, HttpServerOptions opts = {});
  ~HttpServer();
  uint16_t port() const;
  // The connection cap in force (max_connections, lowered by RLIMIT_NOFILE).
  size_t max_connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class Orchestrator;
class State;
// The routes above over an orchestrator (null: read-only, actions give 409;
// then nothing else may use `state` while the server runs).
HttpHandler make_status_handler(State& state, Orchestrator* orchestrator, const std::string& token,
                                const std::string& report_dir);

// A random token (32 hex digits from /dev/urandom).
std::string random_token();

}  // namespace m3ret::orchestrator
