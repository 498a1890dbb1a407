#include "launcher/orchestrator/http_server.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <fstream>
#include <list>
#include <sstream>
#include <thread>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "launcher/orchestrator/orchestrator.h"
#include "launcher/orchestrator/status.h"

namespace m3ret::orchestrator {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kBodyLimit = 64 * 1024;
constexpr size_t kHeaderLimit = 16 * 1024;

void set_cloexec(int fd) {
  int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

// max_connections, lowered so that kFdReserve descriptors stay free below
// the soft RLIMIT_NOFILE after the ones this process holds now.
size_t connection_cap(size_t wanted) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
    return std::max<size_t>(1, wanted);
  std::error_code ec;
  size_t open_now = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++open_now;
  }
  size_t limit = static_cast<size_t>(rl.rlim_cur);
  size_t budget = limit > open_now + kFdReserve ? limit - open_now - kFdReserve : 1;
  return std::max<size_t>(1, std::min(wanted, budget));
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const HttpHandler& handler, std::chrono::milliseconds timeout)
      : stream_(std::move(socket)), handler_(handler), timeout_(timeout) {}

  void start() { read(); }
  // Waiting for (the rest of) a request, i.e. not answering one.
  bool idle() const { return idle_ && !closed_; }
  bool closed() const { return closed_; }

  void close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.socket().close(ignored);
  }

 private:
  void read() {
    idle_ = true;
    parser_.emplace();
    parser_->body_limit(kBodyLimit);
    parser_->header_limit(kHeaderLimit);
    stream_.expires_after(timeout_);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    idle_ = false;
    if (closed_ || ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::eof || ec == asio::error::connection_reset ||
        ec == asio::error::operation_aborted) {
      return close();
    }
    HttpResponse r;
    bool keep = false;
    if (ec) {
      bool too_big = ec == http::error::body_limit || ec == http::error::header_limit ||
                     ec == http::error::buffer_overflow;
      r = {too_big ? 413 : 400, "application/json",
           nlohmann::json{{"error", "malformed request: " + ec.message()}}.dump()};
    } else {
      const auto& req = parser_->get();
      keep = req.keep_alive();
      try {
        r = handler_(std::string(req.method_string()), std::string(req.target()),
                     std::string(req[http::field::authorization]));
      } catch (const std::exception& e) {
        r = {500, "application/json", nlohmann::json{{"error", e.what()}}.dump()};
      }
    }
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(r.status), 11);
    res->set(http::field::server, "m3ret-orchestrator");
    res->set(http::field::content_type, r.content_type);
    res->body() = std::move(r.body);
    res->keep_alive(keep);
    res->prepare_payload();
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res, keep](beast::error_code wec, size_t) {
                        if (wec || !keep) return self->close();
                        self->read();
                      });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_{8192};
  std::optional<http::request_parser<http::string_body>> parser_;
  const HttpHandler& handler_;
  std::chrono::milliseconds timeout_;
  bool idle_ = true, closed_ = false;
};

HttpResponse json_error(int status, const std::string& msg) {
  return {status, "application/json", nlohmann::json{{"error", msg}}.dump()};
}

bool equal_constant_time(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) diff |= a[i] ^ b[i];
  return diff == 0 && !a.empty();
}

}  // namespace

// Everything below runs on the server's one thread.
struct HttpServer::Impl {
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  asio::steady_timer pause{io};
  HttpHandler handler;
  HttpServerOptions opts;
  size_t cap = 1;
  int spare_fd = -1;  // released to refuse one connection when descriptors run out
  std::list<std::weak_ptr<Session>> sessions;  // oldest first
  std::thread thread;

  ~Impl() {
    if (spare_fd >= 0) ::close(spare_fd);
  }

  // Forgets closed sessions; at the cap, closes the one idle the longest.
  void make_room() {
    sessions.remove_if([](const std::weak_ptr<Session>& w) {
      auto s = w.lock();
      return !s || s->closed();
    });
    while (sessions.size() >= cap) {
      auto it = std::find_if(sessions.begin(), sessions.end(), [](const std::weak_ptr<Session>& w) {
        auto s = w.lock();
        return s && s->idle();
      });
      if (it == sessions.end()) return;  // every one is being answered
      if (auto s = it->lock()) s->close();
      sessions.erase(it);
    }
  }

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) return on_accept_error(ec);
      set_cloexec(socket.native_handle());
      make_room();
      if (sessions.size() < cap) {
        auto s = std::make_shared<Session>(std::move(socket), handler, opts.idle_timeout);
        sessions.push_back(s);
        s->start();
      }  // else: every slot answers a request; this client is closed
      accept();
    });
  }

  // Out of descriptors (other parts of the process use them too): accept and
  // close one waiting client with the spare descriptor, then pause instead of
  // spinning on the error.
  void on_accept_error(const beast::error_code& ec) {
    if (ec == asio::error::no_descriptors || ec.value() == ENFILE) {
      if (spare_fd >= 0) ::close(spare_fd);
      int fd = ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) ::close(fd);
      spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    spdlog::warn("status server: accept failed: {}", ec.message());
    pause.expires_after(std::chrono::milliseconds(100));
    pause.async_wait([this](beast::error_code wec) {
      if (!wec) accept();
    });
  }
};

HttpServer::HttpServer(uint16_t port, HttpHandler handler, HttpServerOptions opts)
    : impl_(new Impl) {
  impl_->handler = std::move(handler);
  impl_->opts = opts;
  impl_->spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  impl_->cap = connection_cap(opts.max_connections);
  beast::error_code ec;
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) set_cloexec(impl_->acceptor.native_handle());
  if (!ec) impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw Error(
        fmt::format("status server: cannot listen on 127.0.0.1:{}: {}", port, ec.message()));
  impl_->accept();
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

HttpServer::~HttpServer() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

uint16_t HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

size_t HttpServer::max_connections() const { return impl_->cap; }

namespace {

// The content type of a file of the report folder that is served; "" for any
// other name (no path, no hidden file).
std::string report_file_type(const std::string& name) {
  static const std::map<std::string, std::string> kFiles = {
      {"scaling.csv", "text/csv"},
      {"scaling.md", "text/markdown"},
      {"plot_data.json", "application/json"},
      {"plots.json", "application/json"},
      {"status.html", "text/html; charset=utf-8"}};
  if (auto it = kFiles.find(name); it != kFiles.end()) return it->second;
  const bool plain = !name.empty() && name[0] != '.' &&
                     name.find_first_not_of(
                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._=+-") ==
                         std::string::npos;
  return plain && name.size() > 4 && name.compare(name.size() - 4, 4, ".png") == 0 ? "image/png"
                                                                                   : "";
}

// "%2B" -> "+"; a malformed escape is kept as it is.
std::string url_decode(const std::string& s) {
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      o += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      o += s[i];
    }
  }
  return o;
}

// GET /evals/RUN/step-N/report.{md,json,csv}: a run's evaluation report
// (WORK/evals/...), for the status page's links.
HttpResponse eval_report(State& state, const std::string& report_dir, const std::string& rest) {
  const std::string rel = url_decode(rest);
  const auto a = rel.find('/'), b = a == std::string::npos ? a : rel.find('/', a + 1);
  if (b == std::string::npos) return json_error(404, "expected /evals/RUN/step-N/report.md");
  const std::string run = rel.substr(0, a), step = rel.substr(a + 1, b - a - 1),
                    file = rel.substr(b + 1);
  static const std::map<std::string, std::string> kTypes = {
      {"report.md", "text/plain; charset=utf-8"},
      {"report.json", "application/json"},
      {"report.csv", "text/csv"}};
  const auto type = kTypes.find(file);
  const bool step_ok = step.size() > 5 && step.rfind("step-", 0) == 0 &&
                       step.find_first_not_of("0123456789", 5) == std::string::npos;
  if (!state.run(run) || !step_ok || type == kTypes.end())
    return json_error(404, "no evaluation report '" + rel + "'");
  std::ifstream in(std::filesystem::path(report_dir).parent_path() / "evals" / run / step / file,
                   std::ios::binary);
  if (!in) return json_error(404, "evaluation report '" + rel + "' not written");
  std::stringstream ss;
  ss << in.rdbuf();
  return {200, type->second, ss.str()};
}

// The GET routes, over a consistent state.
HttpResponse read_route(State& state, const std::string& report_dir, const std::string& method,
                        const std::string& path) {
  if (path == "/" || path == "/index.html") {
    if (method != "GET") return json_error(405, "use GET");
    return {200, "text/html; charset=utf-8", status_html(state, report_dir)};
  }
  if (path == "/api/status") {
    if (method != "GET") return json_error(405, "use GET");
    return {200, "application/json", status_json(state).dump(2)};
  }
  if (path.rfind("/report/", 0) == 0) {
    if (method != "GET") return json_error(405, "use GET");
    std::string name = path.substr(8);
    const std::string type = report_file_type(name);
    if (type.empty()) return json_error(404, "no report file '" + name + "'");
    std::ifstream in(std::filesystem::path(report_dir) / name, std::ios::binary);
    if (!in) return json_error(404, "report file '" + name + "' not written yet");
    std::stringstream ss;
    ss << in.rdbuf();
    return {200, type, ss.str()};
  }
  if (path.rfind("/evals/", 0) == 0) {
    if (method != "GET") return json_error(405, "use GET");
    return eval_report(state, report_dir, path.substr(7));
  }
  return json_error(404, "no such path '" + path + "'");
}

constexpr const char* kRunsPrefix = "/api/runs/";

// POST /api/runs/RUN/cancel|retry. The orchestrator's methods take its lock
// themselves, so this runs outside it.
HttpResponse run_action(State& state, Orchestrator* orch, const std::string& token,
                        const std::string& method, const std::string& path,
                        const std::string& auth) {
  std::string rest = path.substr(std::string(kRunsPrefix).size());
  auto slash = rest.rfind('/');
  if (slash == std::string::npos) return json_error(404, "expected /api/runs/RUN/cancel or /retry");
  std::string run = rest.substr(0, slash), action = rest.substr(slash + 1);
  if (action != "cancel" && action != "retry")
    return json_error(404, "unknown action '" + action + "'");
  if (method != "POST") return json_error(405, "use POST");
  if (!equal_constant_time(auth, "Bearer " + token)) {
    return json_error(401, "missing or wrong token (Authorization: Bearer TOKEN)");
  }
  auto known = [&](State& s) { return s.run(run).has_value(); };
  if (!(orch ? orch->with_state(known) : known(state)))
    return json_error(404, "no run '" + run + "'");
  if (!orch) return json_error(409, "no orchestrator attached");
  try {
    if (action == "cancel")
      orch->cancel_run(run);
    else
      orch->retry_run(run);
  } catch (const std::exception& e) {
    return json_error(409, e.what());
  }
  return {200, "application/json",
          nlohmann::json{{"run", run}, {"action", action}, {"ok", true}}.dump()};
}

}  // namespace

HttpHandler make_status_handler(State& state, Orchestrator* orch, const std::string& token,
                                const std::string& report_dir) {
  return [&state, orch, token, report_dir](const std::string& method, const std::string& target,
                                           const std::string& auth) -> HttpResponse {
    const std::string path = target.substr(0, target.find('?'));
    if (path.rfind(kRunsPrefix, 0) == 0) return run_action(state, orch, token, method, path, auth);
    auto read = [&](State& s) { return read_route(s, report_dir, method, path); };
    return orch ? orch->with_state(read) : read(state);
  };
}

std::string random_token() {
  std::ifstream in("/dev/urandom", std::ios::binary);
  unsigned char b[16];
  if (!in.read(reinterpret_cast<char*>(b), sizeof b))
    throw Error("cannot read /dev/urandom for the token");
  std::string t;
  for (unsigned char c : b) t += fmt::format("{:02x}", c);
  return t;
}

}  // namespace m3ret::orchestrator
