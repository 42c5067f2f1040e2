// UpstreamPool and UpstreamConnection (proxy/upstream.*) against a tiny HTTP/1.1
// server in the test (127.0.0.1, port 0): connection reuse per PoolKey, what is not
// pooled (abandoned, close-delimited, over max_idle, removed endpoints), response
// trailers and 1xx interim heads. The io_context runs in the test's thread, bounded.
#include <catch2/catch.hpp>

#include <chrono>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "mesh/cluster/endpoints.hpp"
#include "net/address.hpp"
#include "proxy/io.hpp"
#include "proxy/upstream.hpp"

using namespace meshd::proxy;
using namespace std::chrono_literals;

namespace {

// The responses the server writes, by request path.
const std::map<std::string, std::string, std::less<>> kResponses = {
    {"/len", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"},
    {"/close", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close"},  // then closes
    {"/trailers",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n"
     "5\r\nhello\r\n0\r\nx-checksum: abc123\r\nHost: elsewhere\r\n\r\n"},
    {"/head", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"},  // asked with HEAD: no body follows
    {"/204", "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"},
    {"/304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"},
    {"/conn-close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"},  // then closes
    {"/http10", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"},  // then closes
    {"/interim",
     "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
};

// Accepts connections and answers each request (heads only, no request bodies) from
// kResponses; counts connections and records each request's path.
struct TestServer {
  explicit TestServer(asio::io_context& io) : acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    asio::co_spawn(io, accept_loop(), asio::detached);
  }
  std::uint16_t port() const { return acceptor.local_endpoint().port(); }

  awaitable<void> accept_loop() {
    while (true) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec) co_return;
      ++connections;
      asio::co_spawn(acceptor.get_executor(), serve(std::move(socket)), asio::detached);
    }
  }

  awaitable<void> serve(tcp::socket socket) {
    std::string buffer;
    while (true) {
      std::size_t end;
      while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
        char data[4096];
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(data), use_tuple);
        if (ec) co_return;
        buffer.append(data, n);
      }
      const std::string head = buffer.substr(0, end + 4);
      buffer.erase(0, end + 4);
      const auto sp1 = head.find(' ');
      const std::string path = head.substr(sp1 + 1, head.find(' ', sp1 + 1) - sp1 - 1);
      requests.push_back(path);
      heads.push_back(head);
      const auto it = kResponses.find(path);
      const std::string response = it != kResponses.end() ? it->second : "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
      auto [ec, n] = co_await asio::async_write(socket, asio::buffer(response), use_tuple);
      if (ec || path == "/close" || path == "/conn-close" || path == "/http10") {
        error_code ignored;
        socket.shutdown(tcp::socket::shutdown_both, ignored);
        co_return;
      }
    }
  }

  tcp::acceptor acceptor;
  int connections = 0;
  std::vector<std::string> requests;
  std::vector<std::string> heads;
};

struct Response {
  std::vector<int> statuses;  // interim heads, then the final one
  std::vector<std::vector<std::pair<std::string, std::string>>> fields;  // per head
  std::string body;
  bool ended = false;  // the body ended with an end event (not a reset)
  ResetCause cause = ResetCause::none;
  std::vector<std::pair<std::string, std::string>> trailers;
};

using Fields = std::vector<std::pair<std::string, std::string>>;

Fields copy(std::span<const Field> fields) {
  Fields out;
  for (const auto& f : fields) out.emplace_back(std::string(f.name), std::string(f.value));
  return out;
}

// One GET (or `method`) on `x`: send_head, read_head (through interim heads), read_body to its end.
awaitable<Response> get(UpstreamExchange& x, std::string_view path, bool read_body = true,
                        std::string_view method = "GET") {
  Response out;
  RequestHead head;
  head.method = method;
  head.path = path;
  head.authority = "svc.local";
  OutgoingRequest r;
  r.head = &head;
  r.path = path;
  r.authority = "svc.local";
  r.idle = 2000ms;
  auto sent = co_await x.send_head(r, {}, true);
  REQUIRE_FALSE(sent.has_value());
  const auto deadline = Clock::now() + 3s;
  while (true) {
    ResponseHead rh;
    auto err = co_await x.read_head(deadline, false, rh);
    if (err) FAIL("read_head: " << err->detail);
    out.statuses.push_back(rh.status);
    out.fields.push_back(copy(rh.fields));
    if (rh.status >= 200) break;
  }
  if (!read_body) co_return out;
  for (int guard = 0; guard < 1000; ++guard) {
    const BodyEvent e = co_await x.read_body(deadline);
    if (e.kind == BodyEvent::Kind::data) {
      out.body += e.data;
      continue;
    }
    if (e.kind == BodyEvent::Kind::end) {
      out.ended = true;
      out.trailers = copy(e.trailers);
    } else {
      out.cause = e.cause;
    }
    break;
  }
  co_return out;
}

// Everything one test needs: the server, an endpoint for it, the pool.
struct Rig {
  asio::io_context io;
  TestServer server{io};
  std::shared_ptr<meshd::mesh::Endpoint> ep = [this] {
    auto e = std::make_shared<meshd::mesh::Endpoint>();
    e->ip = *meshd::net::parse_ip("127.0.0.1");
    e->port = server.port();
    e->text = "127.0.0.1:" + std::to_string(e->port);
    return e;
  }();
  std::int64_t gauge = 0;  // connections open (meshd_upstream_connections_active)
  std::optional<UpstreamPool> pool;

  Rig() { pool.emplace(io.get_executor()); }
  ~Rig() { pool.reset(); }

  PoolKey key(std::string tls_identity = {}) const { return PoolKey{ep.get(), UpstreamProtocol::http1, std::move(tls_identity)}; }

  awaitable<std::unique_ptr<UpstreamExchange>> acquire(const PoolKey& k) {
    error_code ec;
    auto x = co_await pool->acquire(k, ep, 2000ms, HeadLimits{}, &gauge, ec);
    REQUIRE_FALSE(ec);
    REQUIRE(x != nullptr);
    co_return x;
  }

  // Runs the test's coroutine to its end (bounded); rethrows what it threw.
  void run(std::function<awaitable<void>()> body) {
    bool done = false;
    std::exception_ptr error;
    asio::co_spawn(io, body(), [&](std::exception_ptr e) {
      error = e;
      done = true;
    });
    const auto end = Clock::now() + 10s;
    while (!done && Clock::now() < end) {
      io.restart();
      io.run_for(20ms);
    }
    if (error) std::rethrow_exception(error);
    REQUIRE(done);
  }
};

constexpr auto kIdle = 10s;

}  // namespace

TEST_CASE("pool: a released exchange's connection is reused for the same key") {
  Rig t;
  t.run([&]() -> awaitable<void> {
    auto x = co_await t.acquire(t.key());
    CHECK_FALSE(x->reused());
    CHECK_FALSE(x->wrote_any());
    auto r = co_await get(*x, "/len");
    CHECK(r.statuses == std::vector<int>{200});
    CHECK(r.body == "hello");
    CHECK(r.ended);
    CHECK(x->wrote_any());
    CHECK(x->reusable());
    t.pool->release(std::move(x), kIdle, 4);
    CHECK(t.pool->idle_count() == 1);

    auto y = co_await t.acquire(t.key());
    CHECK(y->reused());
    CHECK_FALSE(y->wrote_any());  // a new exchange on the old connection
    CHECK(t.pool->idle_count() == 0);
    auto r2 = co_await get(*y, "/len");
    CHECK(r2.body == "hello");
    CHECK(r2.ended);
    t.pool->release(std::move(y), kIdle, 4);
    CHECK(t.pool->idle_count() == 1);
  });
  CHECK(t.server.connections == 1);
  CHECK(t.server.requests == std::vector<std::string>{"/len", "/len"});
  CHECK(t.gauge == 1);
  REQUIRE(t.server.heads.size() == 2);
  CHECK(t.server.heads[0].rfind("GET /len HTTP/1.1\r\n", 0) == 0);
  CHECK(t.server.heads[0].find("Host: svc.local\r\n") != std::string::npos);
}

TEST_CASE("pool: another TLS identity is another key, with its own connection") {
  Rig t;
  t.run([&]() -> awaitable<void> {
    auto x = co_await t.acquire(t.key());
    (void)co_await get(*x, "/len");
    t.pool->release(std::move(x), kIdle, 4);
    REQUIRE(t.pool->idle_count() == 1);

    auto y = co_await t.acquire(t.key("spiffe://mesh/ns/a/sa/b"));
    CHECK_FALSE(y->reused());
    CHECK(t.pool->idle_count() == 1);  // the plain one is still idle
    auto r = co_await get(*y, "/len");
    CHECK(r.ended);
    t.pool->release(std::move(y), kIdle, 4);
    CHECK(t.pool->idle_count() == 2);

    // Each key gets its own connection back.
    auto plain = co_await t.acquire(t.key());
    auto tls = co_await t.acquire(t.key("spiffe://mesh/ns/a/sa/b"));
    CHECK(plain->reused());
    CHECK(tls->reused());
    CHECK(t.pool->idle_count() == 0);
  });
  CHECK(t.server.connections == 2);
}

TEST_CASE("pool: an abandoned exchange is not pooled") {
  Rig t;
  t.run([&]() -> awaitable<void> {
    auto x = co_await t.acquire(t.key());
    auto r = co_await get(*x, "/len", false);  // the head only
    CHECK(r.statuses == std::vector<int>{200});
    x->abandon();
    CHECK_FALSE(x->reusable());
    t.pool->release(std::move(x), kIdle, 4);
    CHECK(t.pool->idle_count() == 0);

    auto y = co_await t.acquire(t.key());
    CHECK_FALSE(y->reused());
    auto r2 = co_await get(*y, "/len");
    CHECK(r2.ended);
    t.pool->release(std::move(y), kIdle, 4);
    CHECK(t.pool->idle_count() == 1);
  });
  CHECK(t.server.connections == 2);
  CHECK(t.gauge == 1);  // the abandoned connection was closed
}

TEST_CASE("pool: an exchange whose response was delimited by the close is not pooled") {
  Rig t;
  t.run([&]() -> awaitable<void> {
    auto x = co_await t.acquire(t.key());
    auto r = co_await get(*x, "/close");
    CHECK(r.statuses == std::vector<int>{200});
    CHECK(r.ended);  // the close ends the body cleanly
    CHECK(r.body == "until the close");
    CHECK_FALSE(x->reusable());
    t.pool->release(std::move(x), kIdle, 4);
    CHECK(t.pool->idle_count() == 0);

    auto y = co_await t.acquire(t.key());
    CHECK_FALSE(y->reused());
    auto r2 = co_await get(*y, "/len");
    CHECK(r2.ended);
  });
  CHECK(t.server.connections == 2);
}

TEST_CASE("pool: max_idle per key is honoured") {
  Rig t;
  t.run([&]() -> awaitable<void> {
    // Three exchanges at once: three connections.
    auto a = co_await t.acquire(t.key());
    auto b = co_await t.acquire(t.key());
    auto c = co_await t.acquire(t.key());
    for (auto* x : {a.get(), b.get(), c.get()}) {
      auto r = co_await get(*x, "/len");
      CHECK(r.ended);
      CHECK(x->reusable());
    }
    t.pool->release(std::move(a), kIdle, 2);
    t.pool->release(std::move(b), kIdle, 2);
    t.pool->release(std::move(c), kIdle, 2);
    CHECK(t.pool->idle_count() == 2);
    CHECK(t.gauge == 2);

    // The limit is per key: another key has room of its own.
    auto d = co_await t.acquire(t.key("other"));
    (void)co_await get(*d, "/len");
    t.pool->release(std::move(d), kIdle, 2);
    CHECK(t.pool->idle_count() == 3);

    // max_idle 0 keeps nothing; an idle timeout of 0 neither.
    auto e = co_await t.acquire(t.key("zero"));
    (void)co_await get(*e, "/len");
    t.pool->release(std::move(e), kIdle, 0);
    auto f = co_await t.acquire(t.key("zero"));
    CHECK_FALSE(f->reused());
    (void)co_await get(*f, "/len");
    t.pool->release(std::move(f), 0ms, 4);
    CHECK(t.pool->idle_count() == 3);
  });
  CHECK(t.server.connections == 6);
  CHECK(t.gauge == 3);
}

TEST_CASE("pool: retain() drops idle connections to endpoints it does not keep") {
  Rig t;
  t.run([&]() -> awaitable<void> {
    auto a = co_await t.acquire(t.key());
    auto b = co_await t.acquire(t.key("tls"));
    auto in_flight = co_await t.acquire(t.key());
    for (auto* x : {a.get(), b.get(), in_flight.get()}) (void)co_await get(*x, "/len");
    t.pool->release(std::move(a), kIdle, 4);
    t.pool->release(std::move(b), kIdle, 4);
    REQUIRE(t.pool->idle_count() == 2);

    t.pool->retain({t.ep.get()});  // the endpoint stays: nothing dropped
    CHECK(t.pool->idle_count() == 2);

    t.pool->retain({});
    CHECK(t.pool->idle_count() == 0);
    CHECK(t.gauge == 1);  // only the one in flight is open

    // One that comes back from a request in flight is closed instead of pooled.
    CHECK(in_flight->reusable());
    t.pool->release(std::move(in_flight), kIdle, 4);
    CHECK(t.pool->idle_count() == 0);
    CHECK(t.gauge == 0);

    // Once the endpoint is back in the view, its connections are pooled again.
    t.pool->retain({t.ep.get()});
    auto c = co_await t.acquire(t.key());
    CHECK_FALSE(c->reused());
    (void)co_await get(*c, "/len");
    t.pool->release(std::move(c), kIdle, 4);
    CHECK(t.pool->idle_count() == 1);
  });
  CHECK(t.server.connections == 4);
}

TEST_CASE("pool: a chunked response's trailers reach read_body's end event") {
  Rig t;
  t.run([&]() -> awaitable<void> {
    auto x = co_await t.acquire(t.key());
    auto r = co_await get(*x, "/trailers");
    CHECK(r.statuses == std::vector<int>{200});
    CHECK(r.body == "hello");
    CHECK(r.ended);
    // x-checksum is passed on; a field never allowed in trailers (Host) is not.
    CHECK(r.trailers == Fields{{"x-checksum", "abc123"}});
    t.pool->release(std::move(x), kIdle, 4);
    CHECK(t.pool->idle_count() == 1);

    // The next response on the connection has no trailers of its own.
    auto y = co_await t.acquire(t.key());
    CHECK(y->reused());
    auto r2 = co_await get(*y, "/len");
    CHECK(r2.ended);
    CHECK(r2.trailers.empty());
  });
  CHECK(t.server.connections == 1);
}

TEST_CASE("pool: a 103 interim head comes before the 200 through read_head") {
  Rig t;
  t.run([&]() -> awaitable<void> {
    auto x = co_await t.acquire(t.key());
    auto r = co_await get(*x, "/interim");
    CHECK(r.statuses == std::vector<int>{103, 200});
    REQUIRE(r.fields.size() == 2);
    CHECK(r.fields[0] == Fields{{"Link", "</style.css>; rel=preload"}});
    CHECK(r.body == "ok");
    CHECK(r.ended);
    CHECK(x->reusable());
    t.pool->release(std::move(x), kIdle, 4);
    CHECK(t.pool->idle_count() == 1);

    auto y = co_await t.acquire(t.key());
    CHECK(y->reused());
    auto r2 = co_await get(*y, "/len");
    CHECK(r2.statuses == std::vector<int>{200});
    CHECK(r2.body == "hello");
  });
  CHECK(t.server.connections == 1);
}

TEST_CASE("pool: responses without a body (to HEAD, 204, 304) end at once and keep the connection") {
  Rig t;
  t.run([&]() -> awaitable<void> {
    for (const auto& [path, method, status] : {std::tuple{"/head", "HEAD", 200}, std::tuple{"/204", "GET", 204},
                                               std::tuple{"/304", "GET", 304}}) {
      INFO(path);
      auto x = co_await t.acquire(t.key());
      auto r = co_await get(*x, path, true, method);
      CHECK(r.statuses == std::vector<int>{status});
      CHECK(r.ended);
      CHECK(r.body.empty());
      CHECK(x->reusable());
      t.pool->release(std::move(x), kIdle, 4);
      CHECK(t.pool->idle_count() == 1);
    }
    // The connection is still in step: the next response is read whole.
    auto y = co_await t.acquire(t.key());
    CHECK(y->reused());
    auto r = co_await get(*y, "/len");
    CHECK(r.body == "hello");
    CHECK(r.ended);
  });
  CHECK(t.server.connections == 1);
  CHECK(t.server.requests == std::vector<std::string>{"/head", "/204", "/304", "/len"});
}

TEST_CASE("pool: a response with Connection: close, or an HTTP/1.0 one, is not pooled") {
  Rig t;
  t.run([&]() -> awaitable<void> {
    for (const char* path : {"/conn-close", "/http10"}) {
      INFO(path);
      auto x = co_await t.acquire(t.key());
      CHECK_FALSE(x->reused());
      auto r = co_await get(*x, path);
      CHECK(r.body == "ok");
      CHECK(r.ended);
      CHECK_FALSE(x->reusable());
      t.pool->release(std::move(x), kIdle, 4);
      CHECK(t.pool->idle_count() == 0);
    }
  });
  CHECK(t.server.connections == 2);
  CHECK(t.gauge == 0);
}
