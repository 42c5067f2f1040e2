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
#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <string>
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
#include "tests/unit/proxy/fixture/http1_client.hpp"
#include "tests/unit/proxy/fixture/http2_client.hpp"
#include "tests/unit/proxy/fixture/http2_upstream.hpp"
#include "tests/unit/proxy/fixture/transport.hpp"
#include "tests/unit/proxy/fixture/upstream.hpp"

namespace meshd::fixture {

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

// HTTP/2 from the client (h2c with prior knowledge) to meshd, whose upstreams stay
// HTTP/1.1 (their listeners say http): the HTTP/2 server adapter under every
// lifecycle test, with the translation to HTTP/1.1 on the way.
inline Protocol h2c_client_protocol() {
  Protocol p = http1_protocol();
  p.name = "h2c client, http1 upstream";
  p.make_client = [](std::uint16_t port) -> std::unique_ptr<Client> {
    return std::make_unique<Http2Client>([port] { return tcp_connect(port, 2000ms); });
  };
  return p;
}

// HTTP/2 end to end: the upstream nodes' listeners say http2 (their routes are
// http2Routes), so meshd's client side speaks HTTP/2 to them too.
inline Protocol http2_protocol() {
  Protocol p = h2c_client_protocol();
  p.name = "http2";
  p.mesh_vars["protocol"] = "http2";
  p.mesh_vars["route"] = "http2Route";
  p.serve_upstream = [](FakeUpstream& up, std::unique_ptr<Transport> t, int connection) {
    serve_http2(up, std::move(t), connection);
  };
  return p;
}

// An HTTP/1.1 client of an HTTP/2 upstream: the translation the other way.
inline Protocol http1_to_http2_protocol() {
  Protocol p = http2_protocol();
  p.name = "http1 client, http2 upstream";
  p.make_client = http1_protocol().make_client;
  return p;
}

// Every lifecycle test runs once per entry. TLS is added here.
inline const std::vector<Protocol>& protocols() {
  static const std::vector<Protocol> all{http1_protocol(), h2c_client_protocol(), http2_protocol(),
                                         http1_to_http2_protocol()};
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
    // The app behind the ingress port speaks the protocol of the upstream nodes'
    // listeners (meshd's server takes it from the node's own listener).
    if (auto it = vars.find("protocol"); it != vars.end() && (it->second == "http2" || it->second == "grpc")) {
      in.app_protocol = proxy::UpstreamProtocol::http2;
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
