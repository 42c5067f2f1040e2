#pragma once
// An in-process integration fixture for the request lifecycle (issue 11, item 8): fake
// upstreams on 127.0.0.1:0, a proxy::Worker of meshd's own running in this process on
// its own thread, and a client for the protocol under test. Every lifecycle test runs
// once per entry of protocols(), the protocol matrix.
//
// How a protocol plugs in. A Protocol names three things:
//   mesh_vars       what the mesh template's ${NAME} placeholders become: the listener
//                   protocol (${protocol}: http, later http2), the route kind
//                   (${route}: httpRoute, later http2Route), and whatever TLS needs
//                   (${listener_tls}: ", tls: {...}" inside each upstream node's listener;
//                   ${backend_tls}: "backendDefaults: {clientPolicy: ...}" in the client
//                   node's spec; both empty today).
//   make_client     a Client that speaks the protocol to meshd's egress or ingress
//                   port (HTTP/1.1 over TCP today; an HTTP/2 client, or either over a
//                   TLS Transport, next).
//   serve_upstream  the fake upstream's server side of one accepted connection: it
//                   reads requests, hands each to FakeUpstream::handle() as a
//                   ServerExchange, and writes what the handler answers.
// The handler (the behaviour by path: /status/N, /echo, /chunked, /slow-body,
// /early-413, /hang, /flaky/KEY/N) and the tests are written once against Client,
// ServerExchange and Transport, so that adding HTTP/2 or TLS means adding an entry to
// protocols() (an HTTP/2 codec for both sides, or a TLS Transport), not tests.
//
// Everything is bounded: every read and write has a deadline, every wait checks the
// stop flag every 50 ms, every loop has a cap. No Catch2 assertion runs off the test's
// thread.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "mesh/cluster/endpoints.hpp"
#include "mesh/compiled/snapshot.hpp"
#include "mesh/config/loader.hpp"
#include "metrics/stats.hpp"
#include "net/address.hpp"
#include "net/listen.hpp"
#include "proxy/capabilities.hpp"
#include "proxy/run_options.hpp"
#include "proxy/worker.hpp"

namespace meshd::fixture {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Headers = std::vector<std::pair<std::string, std::string>>;

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (std::tolower(x) != std::tolower(y)) return false;
  }
  return true;
}

inline std::optional<std::string> find_header(const Headers& h, std::string_view name) {
  for (const auto& [n, v] : h) {
    if (iequals(n, name)) return v;
  }
  return std::nullopt;
}

// ---- byte transports ----------------------------------------------------------------

// A connected byte stream with deadlines. Plain TCP today; a TLS transport wraps one.
class Transport {
 public:
  virtual ~Transport() = default;
  // Up to `n` bytes by `deadline`: the count, 0 at the peer's end, -1 on an error
  // (a reset), -2 when the deadline passed or the owner is stopping.
  virtual long read_some(char* p, std::size_t n, Clock::time_point deadline) = 0;
  virtual bool write_all(std::string_view bytes, Clock::time_point deadline) = 0;
  // Whether something (bytes or the peer's end) can be read before `deadline`.
  virtual bool wait_readable(Clock::time_point deadline) = 0;
  virtual void shutdown_write() = 0;
};

class TcpTransport final : public Transport {
 public:
  // `stop`: when set, waits end early (the owner is shutting down).
  explicit TcpTransport(int fd, const std::atomic<bool>* stop = nullptr) : fd_(fd), stop_(stop) {}
  ~TcpTransport() override {
    if (fd_ >= 0) ::close(fd_);
  }
  TcpTransport(const TcpTransport&) = delete;
  TcpTransport& operator=(const TcpTransport&) = delete;

  long read_some(char* p, std::size_t n, Clock::time_point deadline) override {
    for (int i = 0; i < 1000000; ++i) {
      if (!wait(POLLIN, deadline)) return -2;
      const ssize_t got = ::recv(fd_, p, n, MSG_DONTWAIT);
      if (got >= 0) return static_cast<long>(got);
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
    }
    return -2;
  }
  bool write_all(std::string_view bytes, Clock::time_point deadline) override {
    for (int i = 0; !bytes.empty() && i < 1000000; ++i) {
      if (!wait(POLLOUT, deadline)) return false;
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        bytes.remove_prefix(static_cast<std::size_t>(n));
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        return false;
      }
    }
    return bytes.empty();
  }
  bool wait_readable(Clock::time_point deadline) override { return wait(POLLIN, deadline); }
  void shutdown_write() override { ::shutdown(fd_, SHUT_WR); }

 private:
  // Polls in slices of 50 ms (the stop flag is checked between them).
  bool wait(short events, Clock::time_point deadline) {
    for (int i = 0; i < 1000000; ++i) {
      if (stop_ != nullptr && stop_->load()) return false;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left < 0) return false;
      pollfd p{fd_, events, 0};
      const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 50)));
      if (r > 0) return true;  // ready, or an error / hang-up that the next call reports
      if (r < 0 && errno != EINTR) return false;
    }
    return false;
  }

  int fd_;
  const std::atomic<bool>* stop_;
};

inline std::unique_ptr<Transport> tcp_connect(std::uint16_t port, std::chrono::milliseconds timeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return nullptr;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
    ::close(fd);
    return nullptr;
  }
  pollfd p{fd, POLLOUT, 0};
  int err = 0;
  socklen_t len = sizeof err;
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 ||
      err != 0) {
    ::close(fd);
    return nullptr;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return std::make_unique<TcpTransport>(fd);
}

// Buffered reads over a Transport, for the HTTP/1.1 codecs of both sides.
class Reader {
 public:
  explicit Reader(Transport& t) : t_(t) {}
  // The bytes before `marker` (consumed with it), or nullopt (why() says why).
  std::optional<std::string> until(std::string_view marker, Clock::time_point deadline,
                                   std::size_t max = 1 << 20) {
    for (int i = 0; i < 1000000; ++i) {
      if (const auto at = buf_.find(marker); at != std::string::npos) {
        std::string out = buf_.substr(0, at);
        buf_.erase(0, at + marker.size());
        return out;
      }
      if (buf_.size() > max || !fill(deadline)) return std::nullopt;
    }
    return std::nullopt;
  }
  std::optional<std::string> exact(std::size_t n, Clock::time_point deadline) {
    for (int i = 0; buf_.size() < n && i < 1000000; ++i) {
      if (!fill(deadline)) return std::nullopt;
    }
    if (buf_.size() < n) return std::nullopt;
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }
  // Everything up to the peer's end: true when it ended cleanly.
  bool to_end(std::string& out, Clock::time_point deadline) {
    for (int i = 0; i < 1000000; ++i) {
      out += buf_;
      buf_.clear();
      if (!fill(deadline)) return why_ == "eof";
    }
    return false;
  }
  const std::string& why() const { return why_; }
  const std::string& buffered() const { return buf_; }

 private:
  bool fill(Clock::time_point deadline) {
    char tmp[16384];
    const long n = t_.read_some(tmp, sizeof tmp, deadline);
    if (n > 0) {
      buf_.append(tmp, static_cast<std::size_t>(n));
      return true;
    }
    why_ = n == 0 ? "eof" : n == -1 ? "reset" : "timeout";
    return false;
  }

  Transport& t_;
  std::string buf_;
  std::string why_;
};

// ---- HTTP/1.1 pieces shared by the client and the fake upstream -----------------------

struct Http1Head {
  std::string first_line;
  Headers headers;
};

inline std::optional<Http1Head> parse_http1_head(const std::string& text) {
  Http1Head h;
  std::size_t at = 0;
  for (int i = 0; at <= text.size() && i < 10000; ++i) {
    auto end = text.find("\r\n", at);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(at, end - at);
    at = end + 2;
    if (i == 0) {
      h.first_line = line;
      continue;
    }
    if (line.empty()) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) return std::nullopt;
    std::string value = line.substr(colon + 1);
    const auto b = value.find_first_not_of(" \t");
    const auto e = value.find_last_not_of(" \t");
    value = b == std::string::npos ? std::string() : value.substr(b, e - b + 1);
    h.headers.emplace_back(line.substr(0, colon), value);
  }
  return h;
}

// A chunked body into `body`, its trailers into `trailers`; false when it broke.
inline bool read_chunked(Reader& r, Clock::time_point deadline, std::string& body, Headers& trailers) {
  for (int i = 0; i < (1 << 20); ++i) {
    auto line = r.until("\r\n", deadline, 4096);
    if (!line) return false;
    const std::size_t size = std::strtoul(line->c_str(), nullptr, 16);
    if (size == 0) {
      for (int j = 0; j < 1000; ++j) {
        auto t = r.until("\r\n", deadline, 65536);
        if (!t) return false;
        if (t->empty()) return true;
        const auto colon = t->find(':');
        if (colon == std::string::npos) return false;
        auto value = t->substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        trailers.emplace_back(t->substr(0, colon), value);
      }
      return false;
    }
    auto data = r.exact(size, deadline);
    if (!data) return false;
    body += *data;
    auto crlf = r.until("\r\n", deadline, 2);
    if (!crlf || !crlf->empty()) return false;
  }
  return false;
}

// ---- the client side ----------------------------------------------------------------

struct Request {
  std::string method = "GET";
  std::string authority = "b.local";
  std::string path = "/";
  Headers headers;
  std::string body;
  // The body in pieces of `piece` bytes, `pause` apart, watching for an early
  // response between pieces (0: the whole body at once).
  std::size_t piece = 0;
  std::chrono::milliseconds pause{0};
  std::chrono::milliseconds timeout{5000};  // the whole exchange
};

struct Response {
  int status = 0;  // 0: no response head
  Headers headers;
  std::string body;
  Headers trailers;
  bool complete = false;   // the response reached its framing's end (not cut short)
  std::string error;       // why not: connect, write, timeout, reset, eof, malformed
  std::size_t uploaded = 0;  // request body bytes sent before the response head came
  std::chrono::milliseconds elapsed{0};
  std::optional<std::string> header(std::string_view name) const { return find_header(headers, name); }
  std::optional<std::string> trailer(std::string_view name) const { return find_header(trailers, name); }
};

// One client connection (reconnected when the protocol cannot reuse it).
class Client {
 public:
  virtual ~Client() = default;
  virtual Response request(const Request& r) = 0;
};

class Http1Client final : public Client {
 public:
  using Connect = std::function<std::unique_ptr<Transport>()>;
  explicit Http1Client(Connect connect) : connect_(std::move(connect)) {}

  Response request(const Request& r) override {
    const auto start = Clock::now();
    const auto deadline = start + r.timeout;
    Response out;
    auto finish = [&](std::string error) {
      out.error = std::move(error);
      out.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
      if (!out.error.empty() || !out.complete) close();
      return out;
    };
    if (!t_) {
      t_ = connect_();
      if (!t_) return finish("connect");
      reader_ = std::make_unique<Reader>(*t_);
    }
    std::string head = r.method + " " + r.path + " HTTP/1.1\r\nhost: " + r.authority + "\r\n";
    for (const auto& [n, v] : r.headers) head += n + ": " + v + "\r\n";
    const bool has_body = !r.body.empty() || r.method == "POST" || r.method == "PUT";
    if (has_body) head += "content-length: " + std::to_string(r.body.size()) + "\r\n";
    head += "\r\n";
    if (r.piece == 0) {
      if (!t_->write_all(head + r.body, deadline)) return finish("write");
      out.uploaded = r.body.size();
    } else {
      if (!t_->write_all(head, deadline)) return finish("write");
      std::size_t sent = 0;
      for (int i = 0; sent < r.body.size() && i < (1 << 20); ++i) {
        if (t_->wait_readable(std::min(deadline, Clock::now() + r.pause))) break;  // an early response
        const std::size_t n = std::min(r.piece, r.body.size() - sent);
        if (!t_->write_all(std::string_view(r.body).substr(sent, n), deadline)) break;  // read what came back
        sent += n;
      }
      out.uploaded = sent;
    }
    // Interim (1xx) heads are skipped.
    std::optional<Http1Head> h;
    for (int i = 0; i < 10; ++i) {
      auto text = reader_->until("\r\n\r\n", deadline);
      if (!text) return finish(reader_->why());
      h = parse_http1_head(*text);
      if (!h || h->first_line.size() < 12 || h->first_line.compare(0, 5, "HTTP/") != 0) return finish("malformed");
      out.status = std::atoi(h->first_line.c_str() + 9);
      if (out.status >= 200) break;
    }
    out.headers = h->headers;
    const auto te = out.header("transfer-encoding");
    const auto cl = out.header("content-length");
    bool keep = !iequals(out.header("connection").value_or(""), "close") && out.uploaded == r.body.size();
    if (r.method == "HEAD" || out.status == 204 || out.status == 304) {
      out.complete = true;
    } else if (te && iequals(*te, "chunked")) {
      out.complete = read_chunked(*reader_, deadline, out.body, out.trailers);
      if (!out.complete) return finish(reader_->why().empty() ? "malformed" : reader_->why());
    } else if (cl) {
      auto body = reader_->exact(std::strtoull(cl->c_str(), nullptr, 10), deadline);
      if (!body) {
        out.body = reader_->buffered();
        return finish(reader_->why());
      }
      out.body = std::move(*body);
      out.complete = true;
    } else {
      keep = false;
      out.complete = reader_->to_end(out.body, deadline);
      if (!out.complete) return finish(reader_->why());
    }
    if (!keep) close();
    return finish("");
  }

 private:
  void close() {
    reader_.reset();
    t_.reset();
  }
  Connect connect_;
  std::unique_ptr<Transport> t_;
  std::unique_ptr<Reader> reader_;
};

// ---- the fake upstream ----------------------------------------------------------------

// A request as the fake upstream received it.
struct Recorded {
  std::string method, path, authority;
  Headers headers;
  std::string body;
  bool body_complete = false;  // false: not read (an early answer), or cut short
  int connection = 0;          // which accepted connection carried it (1, 2, ...)
  std::optional<std::string> header(std::string_view name) const { return find_header(headers, name); }
};

// One request on the fake upstream, whatever protocol carried it: what the handler
// reads and answers through.
class ServerExchange {
 public:
  virtual ~ServerExchange() = default;
  virtual Recorded& request() = 0;  // the head, as read; body filled by read_body()
  virtual bool read_body(Clock::time_point deadline) = 0;  // the whole body; false: cut short
  // nullopt length: a body of unknown length (chunked in HTTP/1.1), which may end with trailers.
  virtual bool send_head(int status, const Headers& headers, std::optional<std::size_t> length) = 0;
  virtual bool send_data(std::string_view piece) = 0;
  virtual bool send_end(const Headers& trailers) = 0;
  // Waits until the peer gives up on the exchange (closes or resets), the deadline
  // passes or the upstream stops.
  virtual void wait_peer_gone(Clock::time_point deadline) = 0;
  // The connection (HTTP/1.1) or the stream ends after this exchange, without reading
  // what the peer still sends first.
  virtual void close_after() = 0;
};

class FakeUpstream;
using ServeConnection = std::function<void(FakeUpstream&, std::unique_ptr<Transport>, int connection)>;

// A server on 127.0.0.1:0 that records requests and answers by path:
//   /status/N       status N
//   /echo           200 with the request body
//   /chunked        200, a body of unknown length in two pieces, trailer x-checksum: 12345
//   /slow-body      200 promising 100 bytes, 10 of them, then silence (5 s at most)
//   /early-413      413 as soon as the head is read, before the request body
//   /hang           never answers (until the peer goes, 10 s at most)
//   /flaky/KEY/N    503 for the first N requests with KEY, then 200
//   anything else   200 "hello from NAME"
// Every answer carries x-upstream: NAME.
class FakeUpstream {
 public:
  FakeUpstream(std::string name, ServeConnection serve) : name_(std::move(name)), serve_(std::move(serve)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 128) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ::close(listen_fd_);
      listen_fd_ = -1;
      return;
    }
    port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~FakeUpstream() { stop(); }
  FakeUpstream(const FakeUpstream&) = delete;
  FakeUpstream& operator=(const FakeUpstream&) = delete;

  void stop() {
    stop_ = true;
    if (accept_thread_.joinable()) accept_thread_.join();
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = -1;
  }

  const std::string& name() const { return name_; }
  std::uint16_t port() const { return port_; }
  int connections() const { return connections_.load(); }
  std::vector<Recorded> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::vector<Recorded> requests_to(std::string_view prefix) const {
    std::vector<Recorded> out;
    for (auto& r : requests()) {
      if (r.path.compare(0, prefix.size(), prefix) == 0) out.push_back(std::move(r));
    }
    return out;
  }
  const std::atomic<bool>& stopping() const { return stop_; }

  // The behaviour by path (any protocol's server side calls it once per request).
  void handle(ServerExchange& x) {
    const std::string path = x.request().path;
    Headers h{{"x-upstream", name_}};
    auto starts = [&](std::string_view p) { return path.compare(0, p.size(), p) == 0; };
    auto answer = [&](int status, std::string_view body) {
      x.send_head(status, h, body.size());
      if (!body.empty()) x.send_data(body);
      x.send_end({});
    };
    if (starts("/early-413")) {
      record(x.request());  // the body is never read
      x.close_after();      // (said in the head: connection: close)
      answer(413, "request body too large\n");
      return;
    }
    if (starts("/hang")) {
      record(x.request());
      x.wait_peer_gone(Clock::now() + 10s);
      x.close_after();
      return;
    }
    x.request().body_complete = x.read_body(Clock::now() + 10s);
    record(x.request());
    if (!x.request().body_complete) {
      x.close_after();
      return;
    }
    if (starts("/slow-body")) {
      x.send_head(200, h, 100);
      x.send_data(std::string(10, 's'));
      x.wait_peer_gone(Clock::now() + 5s);
      x.close_after();
    } else if (starts("/chunked")) {
      x.send_head(200, h, std::nullopt);
      x.send_data("chunk-1,");
      x.send_data("chunk-2");
      x.send_end({{"x-checksum", "12345"}});
    } else if (starts("/echo")) {
      answer(200, x.request().body);
    } else if (starts("/status/")) {
      const int status = std::atoi(path.c_str() + 8);
      answer(status, "status " + std::to_string(status) + "\n");
    } else if (starts("/flaky/")) {
      const auto slash = path.rfind('/');
      const std::string key = path.substr(7, slash - 7);
      const int failures = std::atoi(path.c_str() + slash + 1);
      int seen;
      {
        std::lock_guard lock(mu_);
        seen = counters_[key]++;
      }
      if (seen < failures) {
        answer(503, "flaky\n");
      } else {
        answer(200, "recovered\n");
      }
    } else {
      answer(200, "hello from " + name_ + "\n");
    }
  }

 private:
  void record(const Recorded& r) {
    std::lock_guard lock(mu_);
    requests_.push_back(r);
  }

  void accept_loop() {
    for (int i = 0; !stop_ && i < 100000000; ++i) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // a head and its body are two writes
      const int id = ++connections_;
      std::lock_guard lock(mu_);
      threads_.emplace_back([this, fd, id] { serve_(*this, std::make_unique<TcpTransport>(fd, &stop_), id); });
    }
  }

  std::string name_;
  ServeConnection serve_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread accept_thread_;
  mutable std::mutex mu_;
  std::vector<std::thread> threads_;
  std::vector<Recorded> requests_;
  std::map<std::string, int> counters_;
};

// The fake upstream's HTTP/1.1 side of one request.
class Http1ServerExchange final : public ServerExchange {
 public:
  Http1ServerExchange(Transport& t, Reader& r, Recorded head) : t_(t), r_(r), req_(std::move(head)) {}

  Recorded& request() override { return req_; }
  bool read_body(Clock::time_point deadline) override {
    if (body_read_) return body_ok_;
    body_read_ = true;
    const auto te = req_.header("transfer-encoding");
    const auto cl = req_.header("content-length");
    if (te && iequals(*te, "chunked")) {
      Headers trailers;
      body_ok_ = read_chunked(r_, deadline, req_.body, trailers);
    } else if (cl) {
      auto body = r_.exact(std::strtoull(cl->c_str(), nullptr, 10), deadline);
      body_ok_ = body.has_value();
      if (body) req_.body = std::move(*body);
    } else {
      body_ok_ = true;
    }
    if (!body_ok_) broken_ = true;
    return body_ok_;
  }
  bool send_head(int status, const Headers& headers, std::optional<std::size_t> length) override {
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n";
    for (const auto& [n, v] : headers) out += n + ": " + v + "\r\n";
    chunked_ = !length.has_value();
    out += chunked_ ? std::string("transfer-encoding: chunked\r\n")
                    : "content-length: " + std::to_string(*length) + "\r\n";
    if (closing_) out += "connection: close\r\n";
    out += "\r\n";
    return write(out);
  }
  bool send_data(std::string_view piece) override {
    if (!chunked_) return write(piece);
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
    return write(std::string(size) + std::string(piece) + "\r\n");
  }
  bool send_end(const Headers& trailers) override {
    if (!chunked_) return true;
    std::string out = "0\r\n";
    for (const auto& [n, v] : trailers) out += n + ": " + v + "\r\n";
    return write(out + "\r\n");
  }
  void wait_peer_gone(Clock::time_point deadline) override {
    char tmp[4096];
    for (int i = 0; i < 1000000; ++i) {
      const long n = t_.read_some(tmp, sizeof tmp, deadline);
      if (n <= 0) return;  // gone, reset, the deadline, or the upstream stopping
    }
  }
  void close_after() override { closing_ = true; }

  bool body_read() const { return body_read_; }
  bool reusable() const { return !closing_ && !broken_; }

 private:
  static std::string reason(int status) {
    switch (status) {
      case 200: return "OK";
      case 413: return "Payload Too Large";
      case 503: return "Service Unavailable";
      default: return "Status";
    }
  }
  bool write(std::string_view bytes) {
    if (broken_) return false;
    if (!t_.write_all(bytes, Clock::now() + 10s)) broken_ = true;
    return !broken_;
  }

  Transport& t_;
  Reader& r_;
  Recorded req_;
  bool body_read_ = false;
  bool body_ok_ = false;
  bool chunked_ = false;
  bool closing_ = false;
  bool broken_ = false;
};

// Serves HTTP/1.1 requests on one accepted connection until it closes (keep-alive).
inline void serve_http1(FakeUpstream& up, std::unique_ptr<Transport> t, int connection) {
  Reader reader(*t);
  for (int i = 0; i < 10000 && !up.stopping(); ++i) {
    auto text = reader.until("\r\n\r\n", Clock::now() + 60s);  // an idle keep-alive connection waits
    if (!text) return;
    auto head = parse_http1_head(*text);
    if (!head) return;
    Recorded r;
    const auto sp1 = head->first_line.find(' ');
    const auto sp2 = head->first_line.find(' ', sp1 + 1);
    if (sp1 == std::string::npos || sp2 == std::string::npos) return;
    r.method = head->first_line.substr(0, sp1);
    r.path = head->first_line.substr(sp1 + 1, sp2 - sp1 - 1);
    r.headers = std::move(head->headers);
    r.authority = r.header("host").value_or("");
    r.connection = connection;
    const bool close = iequals(r.header("connection").value_or(""), "close");
    Http1ServerExchange x(*t, reader, std::move(r));
    up.handle(x);
    if (!x.body_read() && x.reusable()) x.read_body(Clock::now() + 10s);  // to the next message
    if (!x.reusable()) {
      // A lingering close: what the peer still sends is read and dropped, so that the
      // answer is not lost to a reset.
      t->shutdown_write();
      x.wait_peer_gone(Clock::now() + 5s);
      return;
    }
    if (close) return;
  }
}

// ---- the protocol matrix ----------------------------------------------------------------

struct Protocol {
  std::string name;
  std::map<std::string, std::string> mesh_vars;  // ${NAME} in the mesh template
  std::function<std::unique_ptr<Client>(std::uint16_t port)> make_client;
  ServeConnection serve_upstream;
};

inline Protocol http1_protocol() {
  Protocol p;
  p.name = "http1";
  p.mesh_vars = {{"protocol", "http"}, {"route", "httpRoute"}, {"listener_tls", ""}, {"backend_tls", ""}};
  p.make_client = [](std::uint16_t port) -> std::unique_ptr<Client> {
    return std::make_unique<Http1Client>([port] { return tcp_connect(port, 2000ms); });
  };
  p.serve_upstream = [](FakeUpstream& up, std::unique_ptr<Transport> t, int connection) {
    serve_http1(up, std::move(t), connection);
  };
  return p;
}

// Every lifecycle test runs once per entry. HTTP/2 and TLS are added here.
inline const std::vector<Protocol>& protocols() {
  static const std::vector<Protocol> all{http1_protocol()};
  return all;
}

// In a TEST_CASE: the protocol of this run (Catch2 runs the case once per entry).
#define MESHD_EACH_PROTOCOL()                                                                         \
  (::meshd::fixture::protocols()[GENERATE(range(std::size_t{0}, ::meshd::fixture::protocols().size()))])

// ---- the fixture ----------------------------------------------------------------------

// The lifecycle tests' mesh: node `client` calls b.local, whose router sends
// /flaky/ to b with a retry policy, /hang and /slow-body to b with a 300 ms request
// timeout (and a longer per-try timeout, so that the 504 is perRequest's), /split to
// b and c (90/10), and the rest to b, not retried.
inline constexpr std::string_view kLifecycleMesh = R"(
mesh: {name: m}
virtualNodes:
  - name: client
    spec:
      backends: [{virtualService: {virtualServiceName: b.local}}]
      ${backend_tls}
  - name: b
    spec:
      listeners: [{portMapping: {port: 8080, protocol: ${protocol}} ${listener_tls}}]
      serviceDiscovery: {static: {endpoints: [{address: 127.0.0.1, port: ${port:b}}]}}
  - name: c
    spec:
      listeners: [{portMapping: {port: 8080, protocol: ${protocol}} ${listener_tls}}]
      serviceDiscovery: {static: {endpoints: [{address: 127.0.0.1, port: ${port:c}}]}}
virtualServices:
  - {name: b.local, spec: {provider: {virtualRouter: {virtualRouterName: r}}}}
virtualRouters:
  - {name: r, spec: {listeners: [{portMapping: {port: 8080, protocol: ${protocol}}}]}}
routes:
  - name: retried
    virtualRouterName: r
    spec:
      priority: 1
      ${route}:
        match: {prefix: /flaky/}
        action: {weightedTargets: [{virtualNode: b, weight: 1}]}
        retryPolicy: {maxRetries: 2, perRetryTimeout: {value: 2, unit: s}, httpRetryEvents: [server-error]}
  - name: timed
    virtualRouterName: r
    spec:
      priority: 2
      ${route}:
        match: {prefix: /hang}
        action: {weightedTargets: [{virtualNode: b, weight: 1}]}
        retryPolicy: {maxRetries: 0, perRetryTimeout: {value: 10, unit: s}, httpRetryEvents: [server-error]}
        timeout: {perRequest: {value: 300, unit: ms}}
  - name: slow
    virtualRouterName: r
    spec:
      priority: 3
      ${route}:
        match: {prefix: /slow-body}
        action: {weightedTargets: [{virtualNode: b, weight: 1}]}
        retryPolicy: {maxRetries: 0, perRetryTimeout: {value: 10, unit: s}, httpRetryEvents: [server-error]}
        timeout: {perRequest: {value: 300, unit: ms}}
  - name: split
    virtualRouterName: r
    spec:
      priority: 4
      ${route}:
        match: {prefix: /split}
        action: {weightedTargets: [{virtualNode: b, weight: 90}, {virtualNode: c, weight: 10}]}
        retryPolicy: {maxRetries: 0, perRetryTimeout: {value: 1, unit: s}, httpRetryEvents: [server-error]}
  - name: all
    virtualRouterName: r
    spec:
      priority: 5
      ${route}:
        match: {prefix: /}
        action: {weightedTargets: [{virtualNode: b, weight: 1}]}
        retryPolicy: {maxRetries: 0, perRetryTimeout: {value: 1, unit: s}, httpRetryEvents: [server-error]}
)";

struct FixtureOptions {
  std::string mesh = std::string(kLifecycleMesh);  // ${port:NAME} and the protocol's ${NAME}s
  std::vector<std::string> upstreams = {"b", "c"};
  std::string node = "client";
  std::string app = "b";  // the upstream behind the ingress port (the local app)
  proxy::Limits limits;
};

// The mesh text with its placeholders filled in; an unknown one fails the test.
inline std::string expand_mesh(std::string text, const std::map<std::string, std::string>& vars) {
  std::string out;
  std::size_t at = 0;
  for (int i = 0; i < 100000; ++i) {
    const auto open = text.find("${", at);
    if (open == std::string::npos) break;
    const auto close = text.find('}', open);
    REQUIRE(close != std::string::npos);
    const std::string key = text.substr(open + 2, close - open - 2);
    const auto it = vars.find(key);
    INFO("mesh placeholder ${" << key << "}");
    REQUIRE(it != vars.end());
    out += text.substr(at, open - at);
    out += it->second;
    at = close + 1;
  }
  out += text.substr(at);
  return out;
}

class Fixture {
 public:
  explicit Fixture(const Protocol& p, FixtureOptions o = {}) : proto_(p), opts_(std::move(o)) {
    auto vars = proto_.mesh_vars;
    for (const auto& name : opts_.upstreams) {
      upstreams_.emplace(name, std::make_unique<FakeUpstream>(name, proto_.serve_upstream));
      REQUIRE(upstreams_.at(name)->port() != 0);
      vars["port:" + name] = std::to_string(upstreams_.at(name)->port());
    }
    const std::string text = expand_mesh(opts_.mesh, vars);
    auto loaded = mesh::load_mesh_text(text, "fixture.yaml");
    INFO(loaded.diagnostics.format_all() << text);
    REQUIRE(loaded.ok());
    mesh::Diagnostics diag;
    snap_ = mesh::Snapshot::compile(std::make_shared<const mesh::MeshConfig>(std::move(*loaded.config)), opts_.node,
                                    diag, "fixture.yaml");
    INFO(diag.format_all());
    REQUIRE(snap_);
    for (const auto& u : proxy::unsupported_features(*snap_)) FAIL("not supported by this build: " << u.path << ": " << u.reason);
    registry_.set_snapshot(snap_);  // static discovery: the endpoints at once

    std::error_code ec;
    auto egress = net::ListenSockets::open(*net::parse_ip("127.0.0.1"), 0, 1, 128, ec);
    REQUIRE_FALSE(ec);
    auto ingress = net::ListenSockets::open(*net::parse_ip("127.0.0.1"), 0, 1, 128, ec);
    REQUIRE_FALSE(ec);
    egress_port_ = egress.port();
    ingress_port_ = ingress.port();

    auto view = std::make_shared<proxy::RuntimeView>();
    view->snap = snap_;
    view->endpoints = registry_.table();
    view->node_label = metrics::intern(snap_->node().name);
    proxy::IngressView in;
    in.listener_port = ingress_port_;
    if (auto it = upstreams_.find(opts_.app); it != upstreams_.end()) {
      in.app = std::make_shared<mesh::Endpoint>();
      in.app->ip = *net::parse_ip("127.0.0.1");
      in.app->port = it->second->port();
      in.app->text = net::endpoint_text(in.app->ip, in.app->port);
    }
    view->ingress.push_back(std::move(in));

    worker_ = std::make_unique<proxy::Worker>(0, opts_.limits);
    worker_->start(egress.release(0), {ingress.release(0)});
    worker_->set_view(view);
    // The worker's queue is FIFO: once a scrape answers, the view is in place.
    stats();
  }

  ~Fixture() {
    if (worker_) worker_->stop();  // joins the worker's thread
    worker_.reset();
    for (auto& [_, u] : upstreams_) u->stop();
  }
  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;

  const Protocol& protocol() const { return proto_; }
  FakeUpstream& upstream(const std::string& name) { return *upstreams_.at(name); }
  std::unique_ptr<Client> client() { return proto_.make_client(egress_port_); }          // the app's side
  std::unique_ptr<Client> ingress_client() { return proto_.make_client(ingress_port_); }  // a caller's side
  std::uint16_t egress_port() const { return egress_port_; }
  std::uint16_t ingress_port() const { return ingress_port_; }

  // The worker's metric shard (copied on its own thread).
  metrics::Shard stats() {
    auto f = worker_->scrape();
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    return f.get();
  }
  std::uint64_t retries() {
    std::uint64_t n = 0;
    for (const auto& [_, v] : stats().retries) n += v;
    return n;
  }
  std::uint64_t timeouts() {
    std::uint64_t n = 0;
    for (const auto& [_, v] : stats().timeouts) n += v;
    return n;
  }

 private:
  const Protocol& proto_;
  FixtureOptions opts_;
  std::map<std::string, std::unique_ptr<FakeUpstream>> upstreams_;
  std::shared_ptr<const mesh::Snapshot> snap_;
  mesh::EndpointRegistry registry_;
  std::uint16_t egress_port_ = 0;
  std::uint16_t ingress_port_ = 0;
  std::unique_ptr<proxy::Worker> worker_;  // last: stopped first
};

}  // namespace meshd::fixture
