// The HTTP/2 side of UpstreamPool (proxy/upstream.*, proxy/http2_upstream.*) against
// nghttp2's own server session (the lifecycle fixture's fake upstream, in its own
// thread): streams of concurrent requests share one connection, a GOAWAY retires it
// (the stream it left unprocessed fails retry-safe, the next request gets a new
// connection), and the PING keep-alive closes a connection whose peer went silent.
// The client's io_context runs in the test's thread, bounded.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mesh/cluster/endpoints.hpp"
#include "net/address.hpp"
#include "proxy/io.hpp"
#include "proxy/upstream.hpp"
#include "tests/unit/proxy/fixture/http2_upstream.hpp"

using namespace meshd::proxy;
using namespace std::chrono_literals;
namespace fx = meshd::fixture;

namespace {

struct Rig {
  explicit Rig(fx::ServeConnection serve) : upstream("up", std::move(serve)) {
    ep->ip = *meshd::net::parse_ip("127.0.0.1");
    ep->port = upstream.port();
    ep->text = "127.0.0.1:" + std::to_string(ep->port);
    pool.emplace(io.get_executor());
    pool->set_http2_limits(Http2ClientLimits{}, 1000ms);
  }
  ~Rig() {
    pool->shutdown();
    pool.reset();
    upstream.stop();
  }
  asio::io_context io;
  fx::FakeUpstream upstream;
  std::shared_ptr<meshd::mesh::Endpoint> ep = std::make_shared<meshd::mesh::Endpoint>();
  std::int64_t gauge = 0;
  std::optional<UpstreamPool> pool;

  PoolKey key() const { return PoolKey{ep.get(), UpstreamProtocol::http2, {}}; }
  awaitable<std::unique_ptr<UpstreamExchange>> acquire() {
    error_code ec;
    auto x = co_await pool->acquire(key(), ep, 2000ms, HeadLimits{}, &gauge, ec);
    REQUIRE_FALSE(ec);
    REQUIRE(x != nullptr);
    co_return x;
  }
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
  // Runs the io_context for a while (the connection's reader and writer).
  void spin(std::chrono::milliseconds d) {
    const auto end = Clock::now() + d;
    while (Clock::now() < end) {
      io.restart();
      io.run_for(10ms);
    }
  }
};

struct Got {
  std::optional<Error> error;
  int status = 0;
  std::string body;
};

awaitable<Got> get(UpstreamExchange& x, std::string path) {
  Got out;
  RequestHead head;
  head.method = "GET";
  head.path = path;
  head.authority = "svc.local";
  head.version = Version::http2;
  OutgoingRequest r;
  r.head = &head;
  r.path = path;
  r.authority = "svc.local";
  r.idle = 2000ms;
  if (auto e = co_await x.send_head(r, {}, true)) {
    out.error = e;
    co_return out;
  }
  ResponseHead rh;
  if (auto e = co_await x.read_head(Clock::now() + 3s, false, rh)) {
    out.error = e;
    co_return out;
  }
  out.status = rh.status;
  for (int i = 0; i < 100; ++i) {
    const auto ev = co_await x.read_body(Clock::now() + 3s);
    if (ev.kind != BodyEvent::Kind::data) break;
    out.body += ev.data;
  }
  co_return out;
}

}  // namespace

TEST_CASE("http2 pool: concurrent requests share one connection, each on its own stream") {
  Rig t([](fx::FakeUpstream& up, std::unique_ptr<fx::Transport> tr, int c) { fx::serve_http2(up, std::move(tr), c); });
  t.run([&]() -> awaitable<void> {
    auto a = co_await t.acquire();
    auto b = co_await t.acquire();  // while `a` is open: the same connection
    CHECK_FALSE(a->reused());
    CHECK(b->reused());
    auto ra = co_await get(*a, "/one");
    auto rb = co_await get(*b, "/two");
    CHECK(ra.status == 200);
    CHECK(rb.status == 200);
    CHECK(ra.body == "hello from up\n");
    CHECK(a->reusable());
    CHECK(a->release_shared(10s));  // the connection stays with the pool
    t.pool->release(std::move(a), 10s, 4);
    t.pool->release(std::move(b), 10s, 4);
    CHECK(t.pool->shared_count() == 1);
  });
  CHECK(t.upstream.connections() == 1);
  CHECK(t.upstream.requests().size() == 2);
  CHECK(t.gauge == 1);
}

TEST_CASE("http2 pool: a GOAWAY retires the connection; its unprocessed stream fails retry-safe") {
  std::atomic<int> served{0};
  Rig t([&](fx::FakeUpstream& up, std::unique_ptr<fx::Transport> tr, int connection) {
    fx::Http2UpstreamSession s(*tr, connection, up.stopping());
    if (connection == 1) {
      // Two requests come; only the first is processed.
      const auto first = s.next_request(Clock::now() + 5s);
      const auto second = s.next_request(Clock::now() + 5s);
      if (first == 0 || second == 0) return;
      s.goaway(first);
      fx::Http2ServerExchange x(s, first);
      up.handle(x);
      ++served;
      for (int i = 0; i < 100 && s.alive(); ++i) s.pump(Clock::now() + 50ms);  // until the client closes
      return;
    }
    fx::serve_http2(up, std::move(tr), connection);
  });
  t.run([&]() -> awaitable<void> {
    auto a = co_await t.acquire();
    auto b = co_await t.acquire();
    // Both requests go out before either answer comes back.
    RequestHead head;
    head.method = "GET";
    head.authority = "svc.local";
    OutgoingRequest r;
    r.head = &head;
    r.path = "/a";
    r.authority = "svc.local";
    const auto sent_a = co_await a->send_head(r, {}, true);
    REQUIRE_FALSE(sent_a.has_value());
    r.path = "/b";
    const auto sent_b = co_await b->send_head(r, {}, true);
    REQUIRE_FALSE(sent_b.has_value());
    ResponseHead rh;
    const auto err_b = co_await b->read_head(Clock::now() + 3s, false, rh);
    REQUIRE(err_b.has_value());
    CHECK(err_b->kind == ErrorKind::upstream_refused);
    CHECK(err_b->retry_safe);
    ResponseHead ra;
    const auto err_a = co_await a->read_head(Clock::now() + 3s, false, ra);
    if (err_a) FAIL("read_head a: " << err_a->detail);
    CHECK(ra.status == 200);
    a.reset();
    b.reset();
    // The next request goes to a new connection.
    auto c = co_await t.acquire();
    CHECK_FALSE(c->reused());
    auto rc = co_await get(*c, "/c");
    CHECK(rc.status == 200);
  });
  CHECK(served == 1);
  CHECK(t.upstream.connections() == 2);
}

TEST_CASE("http2 pool: the PING keep-alive closes a connection whose peer went silent, not an answering one") {
  std::atomic<bool> silent{false};
  Rig t([&](fx::FakeUpstream& up, std::unique_ptr<fx::Transport> tr, int c) {
    if (silent) {
      // Reads and never answers (a dead peer behind a live socket).
      char buf[4096];
      for (int i = 0; i < 1000 && !up.stopping(); ++i) {
        if (tr->read_some(buf, sizeof buf, Clock::now() + 50ms) == 0) return;
      }
      return;
    }
    fx::serve_http2(up, std::move(tr), c);
  });
  // An answering server: PINGs are acknowledged (nghttp2 does it), the connection stays.
  std::shared_ptr<Http2UpstreamConnection> live;
  t.run([&]() -> awaitable<void> {
    live = std::make_shared<Http2UpstreamConnection>(t.io.get_executor(), t.ep, Http2ClientLimits{});
    const auto ec = co_await live->connect(2000ms);  // a named result (GCC 12 and co_await in macros)
    CHECK_FALSE(ec);
  });
  t.spin(100ms);
  CHECK_FALSE(live->closed());
  live->keepalive(Clock::now() + 2s, 1000ms);  // silent for "2 s": a PING goes out
  CHECK_FALSE(live->closed());
  t.spin(200ms);
  live->keepalive(Clock::now() + 4s, 1000ms);  // answered: no close (another PING at most)
  t.spin(100ms);
  CHECK_FALSE(live->closed());
  live->close();
  t.spin(50ms);

  silent = true;
  std::shared_ptr<Http2UpstreamConnection> dead;
  t.run([&]() -> awaitable<void> {
    dead = std::make_shared<Http2UpstreamConnection>(t.io.get_executor(), t.ep, Http2ClientLimits{});
    const auto ec = co_await dead->connect(2000ms);  // a named result (GCC 12 and co_await in macros)
    CHECK_FALSE(ec);
  });
  t.spin(100ms);
  dead->keepalive(Clock::now() + 2s, 1000ms);  // a PING goes out
  t.spin(100ms);
  CHECK_FALSE(dead->closed());
  dead->keepalive(Clock::now() + 4s, 1000ms);  // unanswered for the interval: closed
  t.spin(50ms);
  CHECK(dead->closed());
}
