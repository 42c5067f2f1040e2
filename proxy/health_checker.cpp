#include "proxy/health_checker.hpp"

#include <random>

#include "mesh/cluster/resilience.hpp"
#include "net/log.hpp"
#include "proxy/upstream.hpp"

namespace meshd::proxy {

struct HealthChecker::Target {
  Target(asio::io_context& ioc, std::shared_ptr<mesh::Endpoint> e, const mesh::HealthCheck& c, std::string h,
         std::string n)
      : endpoint(std::move(e)), config(c), host(std::move(h)), node(std::move(n)),
        state(c.healthy_threshold, c.unhealthy_threshold), timer(ioc) {}
  std::shared_ptr<mesh::Endpoint> endpoint;
  mesh::HealthCheck config;
  std::string host;  // the Host of HTTP checks: the node's discovery name, else the address
  std::string node;  // for the log
  mesh::HealthState state;
  asio::steady_timer timer;                 // between probes
  UpstreamExchange* probing = nullptr;      // the probe's exchange, while one runs
  bool stopped = false;
  bool done_once = false;
  void stop() {
    stopped = true;
    timer.cancel();
    if (probing != nullptr) probing->abandon();
  }
};

HealthChecker::HealthChecker(asio::io_context& ioc) : ioc_(ioc) {}

HealthChecker::~HealthChecker() {
  for (auto& [_, t] : targets_) t->stop();
}

void HealthChecker::update(const mesh::Snapshot& snap, const mesh::EndpointTable& table) {
  std::map<const mesh::Endpoint*, std::shared_ptr<Target>> next;
  for (std::size_t i = 0; i < table.size() && i < snap.clusters().size(); ++i) {
    const mesh::Listener* l = mesh::cluster_listener(snap.clusters()[i]);
    if (l == nullptr || !l->health_check) continue;
    for (const auto& e : table[i]->endpoints) {
      if (next.count(e.get())) continue;
      if (auto it = targets_.find(e.get()); it != targets_.end()) {
        next[e.get()] = it->second;
        continue;
      }
      std::string host = mesh::discovery_name(snap.clusters()[i]);
      auto t = std::make_shared<Target>(ioc_, e, *l->health_check, host.empty() ? e->text : host, table[i]->node);
      next[e.get()] = t;
      asio::co_spawn(ioc_, run(t), asio::detached);  // a new endpoint is checked at once
    }
  }
  for (auto& [ep, t] : targets_) {
    if (!next.count(ep)) t->stop();
  }
  targets_ = std::move(next);
}

bool HealthChecker::first_round_done() const {
  for (const auto& [_, t] : targets_) {
    if (!t->done_once) return false;
  }
  return true;
}

awaitable<void> HealthChecker::run(std::shared_ptr<Target> t) {
  static thread_local std::mt19937 rng(std::random_device{}());
  // Bounded: one probe per interval for as long as the endpoint exists (years at the
  // smallest interval App Mesh allows).
  for (std::uint64_t round = 0; round < (1ULL << 40) && !t->stopped; ++round) {
    const Verdict v = co_await probe(*t);
    if (t->stopped) break;
    record(*t, v);
    const auto interval = t->config.interval_millis;
    const auto jitter =
        interval / 10 > 0 ? static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(interval / 10)) : 0;
    t->timer.expires_after(std::chrono::milliseconds(interval + jitter));
    co_await t->timer.async_wait(use_tuple);
  }
}

awaitable<HealthChecker::Verdict> HealthChecker::probe(Target& t) {
  const auto timeout = std::chrono::milliseconds(t.config.timeout_millis);
  const auto deadline = Clock::now() + timeout;
  const std::string no_answer = "no answer within " + std::to_string(t.config.timeout_millis) + " ms";
  if (t.config.protocol == mesh::Protocol::http2 || t.config.protocol == mesh::Protocol::grpc) {
    co_return co_await probe_http2(t, t.config.protocol == mesh::Protocol::grpc);
  }
  UpstreamConnection conn(t.timer.get_executor(), t.endpoint, HeadLimits{});
  t.probing = &conn;
  struct Done {
    Target& t;
    ~Done() { t.probing = nullptr; }
  } done{t};
  if (auto ec = co_await conn.connect(timeout)) {
    co_return Verdict{false, ec == asio::error::timed_out ? no_answer : "connect: " + ec.message()};
  }
  if (t.config.protocol == mesh::Protocol::tcp) co_return Verdict{true, {}};
  // HTTP: GET path on the same client adapter requests use; a 200 passes.
  static constexpr Field kAgent[] = {{"User-Agent", "meshd-health-check"}};
  RequestHead head;
  head.method = "GET";
  head.fields = kAgent;
  OutgoingRequest out;
  out.head = &head;
  const std::string path = t.config.path.value_or("/");
  out.path = path;
  out.authority = t.host;
  out.idle = timeout;
  if (auto err = co_await conn.send_head(out, {}, true)) co_return Verdict{false, "write: " + err->detail};
  ResponseHead rh;
  for (int interim = 0; interim < 10; ++interim) {
    if (auto err = co_await conn.read_head(deadline, false, rh)) {
      co_return Verdict{false, err->kind == ErrorKind::upstream_timeout    ? no_answer
                               : err->kind == ErrorKind::upstream_protocol ? "not an HTTP response"
                                                                           : "no HTTP response"};
    }
    if (rh.status >= 200) break;
  }
  if (rh.status != 200) co_return Verdict{false, "HTTP " + std::to_string(rh.status)};
  co_return Verdict{true, {}};
}

namespace {

// The gRPC health protocol (grpc.health.v1): the request is an empty
// HealthCheckRequest (service "": the server as a whole) in one uncompressed message;
// the answer's field 1 is the status, SERVING = 1.
constexpr std::string_view kGrpcHealthRequest("\0\0\0\0\0", 5);

// The status in a HealthCheckResponse message (gRPC framing included), or -1.
int grpc_health_status(std::string_view body) {
  if (body.size() < 5 || body[0] != 0) return -1;  // compressed or short
  const auto* p = reinterpret_cast<const unsigned char*>(body.data());
  const std::size_t len = (std::size_t{p[1]} << 24) | (std::size_t{p[2]} << 16) | (std::size_t{p[3]} << 8) | p[4];
  if (body.size() < 5 + len) return -1;
  std::string_view msg = body.substr(5, len);
  int status = 0;  // proto3: an absent field is 0 (UNKNOWN)
  while (!msg.empty()) {
    const auto key = static_cast<unsigned char>(msg[0]);
    msg.remove_prefix(1);
    if ((key & 7) != 0) return -1;  // only varints are expected
    std::uint64_t v = 0;
    int shift = 0;
    for (;;) {
      if (msg.empty() || shift > 63) return -1;
      const auto b = static_cast<unsigned char>(msg[0]);
      msg.remove_prefix(1);
      v |= std::uint64_t{b & 0x7fu} << shift;
      shift += 7;
      if ((b & 0x80) == 0) break;
    }
    if ((key >> 3) == 1) status = static_cast<int>(v);
  }
  return status;
}

}  // namespace

awaitable<HealthChecker::Verdict> HealthChecker::probe_http2(Target& t, bool grpc) {
  const auto timeout = std::chrono::milliseconds(t.config.timeout_millis);
  const auto deadline = Clock::now() + timeout;
  const std::string no_answer = "no answer within " + std::to_string(t.config.timeout_millis) + " ms";
  auto conn = std::make_shared<Http2UpstreamConnection>(t.timer.get_executor(), t.endpoint, Http2ClientLimits{});
  struct Close {
    Target& t;
    std::shared_ptr<Http2UpstreamConnection> conn;
    ~Close() {
      t.probing = nullptr;
      conn->close();
    }
  } close{t, conn};
  if (auto ec = co_await conn->connect(timeout)) {
    co_return Verdict{false, ec == asio::error::timed_out ? no_answer : "connect: " + ec.message()};
  }
  auto x = conn->open_exchange();
  if (!x) co_return Verdict{false, "no HTTP/2 stream"};
  t.probing = x.get();
  static constexpr Field kHttp2[] = {{"user-agent", "meshd-health-check"}};
  static constexpr Field kGrpc[] = {{"content-type", "application/grpc"},
                                    {"te", "trailers"},
                                    {"user-agent", "meshd-health-check"}};
  RequestHead head;
  head.method = grpc ? "POST" : "GET";
  head.fields = grpc ? std::span<const Field>(kGrpc) : std::span<const Field>(kHttp2);
  head.version = Version::http2;
  OutgoingRequest out;
  out.head = &head;
  const std::string path = grpc ? "/grpc.health.v1.Health/Check" : t.config.path.value_or("/");
  out.path = path;
  out.authority = t.host;
  out.idle = timeout;
  if (grpc) {
    out.has_body = true;
    out.length = kGrpcHealthRequest.size();
  }
  if (auto err = co_await x->send_head(out, grpc ? kGrpcHealthRequest : std::string_view(), true)) {
    co_return Verdict{false, "write: " + err->detail};
  }
  ResponseHead rh;
  for (int interim = 0; interim < 10; ++interim) {
    if (auto err = co_await x->read_head(deadline, false, rh)) {
      co_return Verdict{false, err->kind == ErrorKind::upstream_timeout ? no_answer : "no HTTP/2 response"};
    }
    if (rh.status >= 200) break;
  }
  if (!grpc) {
    if (rh.status < 200 || rh.status > 299) co_return Verdict{false, "HTTP " + std::to_string(rh.status)};
    co_return Verdict{true, {}};
  }
  if (rh.status != 200) co_return Verdict{false, "HTTP " + std::to_string(rh.status)};
  std::optional<std::string> grpc_status;
  if (auto s = rh.get("grpc-status")) grpc_status = std::string(*s);  // trailers-only
  std::string body;
  for (int piece = 0; piece < 64 && rh.has_body && !grpc_status; ++piece) {
    const auto ev = co_await x->read_body(deadline);
    if (ev.kind == BodyEvent::Kind::reset) co_return Verdict{false, ev.cause == ResetCause::timeout ? no_answer : "reset"};
    if (ev.kind == BodyEvent::Kind::data) {
      body.append(ev.data);
      if (body.size() > 4096) co_return Verdict{false, "health response too large"};
      continue;
    }
    if (auto s = find_field(ev.trailers, "grpc-status")) grpc_status = std::string(*s);
    break;
  }
  if (grpc_status != "0") co_return Verdict{false, "grpc-status " + grpc_status.value_or("missing")};
  const int status = grpc_health_status(body);
  if (status != 1) {
    co_return Verdict{false, status < 0 ? std::string("not a HealthCheckResponse")
                                        : "status " + std::to_string(status) + " (not SERVING)"};
  }
  co_return Verdict{true, {}};
}

void HealthChecker::record(Target& t, const Verdict& v) {
  const bool was = t.endpoint->healthy.load(std::memory_order_relaxed);
  const bool now = t.state.record(v.pass);
  t.endpoint->healthy.store(now, std::memory_order_relaxed);
  // Transitions are worth a line; a new endpoint's first pass only at debug (a mesh
  // with many endpoints would otherwise log each one at start).
  if (t.done_once ? now != was : !now) {
    log::write(log::Level::info, "health check: node " + t.node + " endpoint " + t.endpoint->text + " is " +
                                     (now ? "healthy" : "unhealthy") + (v.pass ? "" : " (" + v.why + ")"));
  } else {
    log::write(log::Level::debug, "health check: node " + t.node + " endpoint " + t.endpoint->text + ": " +
                                      (v.pass ? "passed" : "failed (" + v.why + ")"));
  }
  t.done_once = true;
}

}  // namespace meshd::proxy
