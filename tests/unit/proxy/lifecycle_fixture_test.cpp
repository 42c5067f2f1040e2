// The request lifecycle in process (issue 11, item 8): meshd's Worker on its own
// thread, fake upstreams and clients on 127.0.0.1:0 (tests/unit/proxy/fixture.hpp).
// Every case runs once per entry of the protocol matrix (fixture::protocols()):
// HTTP/1.1 today; HTTP/2 and TLS join as entries, with no new test code.
#include <catch2/catch.hpp>
#include <future>
#include <string>

#include "tests/unit/proxy/fixture.hpp"

using namespace meshd::fixture;

namespace {

// Bytes that show where they came from (a shifted or truncated body does not match).
std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

Request get(std::string path, std::string authority = "b.local") {
  Request r;
  r.path = std::move(path);
  r.authority = std::move(authority);
  return r;
}

}  // namespace

TEST_CASE("lifecycle: a routed GET reaches the upstream and its 200 comes back with the body") {
  const Protocol& p = MESHD_EACH_PROTOCOL();
  CAPTURE(p.name);
  Fixture f(p);
  auto client = f.client();

  const auto r = client->request(get("/hello?x=1"));
  CAPTURE(r.error);
  REQUIRE(r.status == 200);
  CHECK(r.complete);
  CHECK(r.body == "hello from b\n");
  CHECK(r.header("x-upstream").value_or("(none)") == "b");
  const auto seen = f.upstream("b").requests();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].method == "GET");
  CHECK(seen[0].path == "/hello?x=1");
  CHECK(seen[0].authority == "b.local");
  CHECK(seen[0].header("x-request-id").has_value());  // meshd's own, the client sent none
  CHECK(f.upstream("c").requests().empty());
}

TEST_CASE("lifecycle: a POST body is forwarded whole, with its length") {
  const Protocol& p = MESHD_EACH_PROTOCOL();
  CAPTURE(p.name);
  Fixture f(p);
  auto client = f.client();

  // Kept whole for retries (under retry_buffer_bytes), and streamed past it.
  for (const std::size_t size : {std::size_t{1000}, std::size_t{200000}}) {
    CAPTURE(size);
    Request req = get("/echo");
    req.method = "POST";
    req.body = pattern(size);
    const auto r = client->request(req);
    CAPTURE(r.error);
    REQUIRE(r.status == 200);
    CHECK(r.complete);
    CHECK(r.body.size() == size);
    CHECK(r.body == req.body);
    const auto seen = f.upstream("b").requests_to("/echo");
    REQUIRE_FALSE(seen.empty());
    CHECK(seen.back().body_complete);
    CHECK(seen.back().body.size() == size);
    CHECK(seen.back().body == req.body);
  }
}

TEST_CASE("lifecycle: a weighted route splits traffic 90/10") {
  const Protocol& p = MESHD_EACH_PROTOCOL();
  CAPTURE(p.name);
  Fixture f(p);
  auto client = f.client();

  int b = 0, c = 0, other = 0;
  for (int i = 0; i < 100; ++i) {
    const auto r = client->request(get("/split/" + std::to_string(i)));
    const auto from = r.header("x-upstream");
    if (r.status == 200 && from == "b") {
      ++b;
    } else if (r.status == 200 && from == "c") {
      ++c;
    } else {
      ++other;
    }
  }
  CAPTURE(b, c, other);
  CHECK(other == 0);
  // Binomial(100, 0.1): 1..25 holds but for a chance below 1e-4.
  CHECK(c >= 1);
  CHECK(c <= 25);
  CHECK(b + c == 100);
  CHECK(f.upstream("b").requests_to("/split").size() == static_cast<std::size_t>(b));
  CHECK(f.upstream("c").requests_to("/split").size() == static_cast<std::size_t>(c));
}

TEST_CASE("lifecycle: a 503 is retried by the route's retry policy, and the retry counted") {
  const Protocol& p = MESHD_EACH_PROTOCOL();
  CAPTURE(p.name);
  Fixture f(p);
  auto client = f.client();

  // The route "retried" has httpRetryEvents [server-error]: the first 503 is retried.
  const auto r = client->request(get("/flaky/once/1"));
  CAPTURE(r.error);
  REQUIRE(r.status == 200);
  CHECK(r.body == "recovered\n");
  CHECK(f.upstream("b").requests_to("/flaky/once/").size() == 2);
  CHECK(f.retries() == 1);

  // The catch-all route retries nothing (maxRetries 0): its 503 comes back as is.
  const auto plain = client->request(get("/status/503"));
  CHECK(plain.status == 503);
  CHECK(f.upstream("b").requests_to("/status/503").size() == 1);
  CHECK(f.retries() == 1);
}

TEST_CASE("lifecycle: a hung upstream gets 504 upstream_timeout by the route's perRequest timeout") {
  const Protocol& p = MESHD_EACH_PROTOCOL();
  CAPTURE(p.name);
  Fixture f(p);
  auto client = f.client();

  const auto r = client->request(get("/hang"));
  CAPTURE(r.error, r.elapsed.count());
  REQUIRE(r.status == 504);
  CHECK(r.header("x-meshd-error").value_or("(none)") == "upstream_timeout");
  CHECK(r.elapsed >= std::chrono::milliseconds(250));  // perRequest is 300 ms
  CHECK(r.elapsed < std::chrono::milliseconds(2000));
  CHECK(f.upstream("b").requests_to("/hang").size() == 1);
  CHECK(f.timeouts() >= 1);
}

TEST_CASE("lifecycle: a response body cut short by the request timeout never looks complete") {
  const Protocol& p = MESHD_EACH_PROTOCOL();
  CAPTURE(p.name);
  Fixture f(p);
  auto client = f.client();

  const auto r = client->request(get("/slow-body"));
  CAPTURE(r.error, r.elapsed.count());
  CHECK(r.status == 200);  // the head went out before the body stalled
  CHECK_FALSE(r.complete);
  CHECK(r.body.size() < 100);
  CHECK(r.elapsed < std::chrono::milliseconds(2000));
  // The next request gets a fresh connection and its full answer.
  const auto next = client->request(get("/hello"));
  CHECK(next.status == 200);
  CHECK(next.complete);
}

TEST_CASE("lifecycle: an unknown authority under DROP_ALL gets 403 egress_denied") {
  const Protocol& p = MESHD_EACH_PROTOCOL();
  CAPTURE(p.name);
  Fixture f(p);
  auto client = f.client();

  const auto r = client->request(get("/hello", "unknown.local"));
  CAPTURE(r.error);
  REQUIRE(r.status == 403);
  CHECK(r.header("x-meshd-error").value_or("(none)") == "egress_denied");
  CHECK(r.body.find("unknown.local") != std::string::npos);
  CHECK(f.upstream("b").requests().empty());
  CHECK(f.upstream("c").requests().empty());
}

TEST_CASE("lifecycle: an upstream's early 413 reaches the client before the upload completes") {
  const Protocol& p = MESHD_EACH_PROTOCOL();
  CAPTURE(p.name);
  Fixture f(p);
  auto client = f.client();

  // 1 MiB in 16 KiB pieces, 20 ms apart: about 1.3 s of upload, unless the answer
  // comes first (the client stops sending when it does).
  Request req = get("/early-413");
  req.method = "POST";
  req.body = pattern(1 << 20);
  req.piece = 16 * 1024;
  req.pause = std::chrono::milliseconds(20);
  req.timeout = std::chrono::milliseconds(15000);
  const auto r = client->request(req);
  CAPTURE(r.error, r.uploaded, r.elapsed.count());
  REQUIRE(r.status == 413);
  CHECK(r.body == "request body too large\n");
  CHECK(r.uploaded < req.body.size());
  CHECK(r.header("x-upstream").value_or("(none)") == "b");
  const auto seen = f.upstream("b").requests_to("/early-413");
  REQUIRE(seen.size() == 1);
  CHECK_FALSE(seen[0].body_complete);
  // meshd is still fine afterwards.
  const auto next = client->request(get("/hello"));
  CHECK(next.status == 200);
}

TEST_CASE("lifecycle: response trailers arrive") {
  const Protocol& p = MESHD_EACH_PROTOCOL();
  CAPTURE(p.name);
  Fixture f(p);
  auto client = f.client();

  Request req = get("/chunked");
  req.headers = {{"te", "trailers"}};
  const auto r = client->request(req);
  CAPTURE(r.error);
  REQUIRE(r.status == 200);
  CHECK(r.complete);
  CHECK(r.body == "chunk-1,chunk-2");
  CHECK(r.trailer("x-checksum").value_or("(none)") == "12345");
}

TEST_CASE("lifecycle: a connection to the upstream is reused for the next request") {
  const Protocol& p = MESHD_EACH_PROTOCOL();
  CAPTURE(p.name);
  Fixture f(p);
  auto client = f.client();

  CHECK(client->request(get("/status/200")).status == 200);
  CHECK(client->request(get("/status/200")).status == 200);
  // From another client connection too: the pool is the worker's.
  auto other = f.client();
  CHECK(other->request(get("/status/200")).status == 200);
  const auto seen = f.upstream("b").requests();
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].connection == seen[1].connection);
  CHECK(seen[1].connection == seen[2].connection);
  CHECK(f.upstream("b").connections() == 1);
}

TEST_CASE("lifecycle: an inbound request on the ingress port reaches the local app") {
  const Protocol& p = MESHD_EACH_PROTOCOL();
  CAPTURE(p.name);
  Fixture f(p);
  auto client = f.ingress_client();

  const auto r = client->request(get("/hello", "anything.local"));
  CAPTURE(r.error);
  REQUIRE(r.status == 200);
  CHECK(r.body == "hello from b\n");
  const auto seen = f.upstream("b").requests();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].authority == "anything.local");
}

TEST_CASE("lifecycle: the worker stops cleanly with a request in flight") {
  const Protocol& p = MESHD_EACH_PROTOCOL();
  CAPTURE(p.name);
  auto f = std::make_unique<Fixture>(p);
  // Ingress has no route timeout of 300 ms (its listener's default is 15 s): /hang
  // stays in flight until the worker stops.
  auto client = f->ingress_client();
  auto idle = f->client();
  REQUIRE(idle->request(get("/hello")).status == 200);  // an idle keep-alive connection too
  auto pending = std::async(std::launch::async, [&client] {
    Request r = get("/hang");
    r.timeout = std::chrono::milliseconds(8000);
    return client->request(r);
  });
  bool arrived = false;
  for (int i = 0; i < 100 && !arrived; ++i) {
    arrived = !f->upstream("b").requests_to("/hang").empty();
    if (!arrived) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(arrived);
  const auto t0 = Clock::now();
  f.reset();  // Worker::stop, then the upstreams
  CHECK(Clock::now() - t0 < std::chrono::seconds(3));
  REQUIRE(pending.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  const auto r = pending.get();
  CAPTURE(r.error, r.elapsed.count());
  CHECK(r.status == 0);  // the connection closed under it, no answer
  CHECK(r.elapsed < std::chrono::milliseconds(8000));
}
