// Routing decisions on a compiled snapshot, without sockets.
#include <catch2/catch.hpp>

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // designated initializers for requests

#include <map>
#include <random>

#include "mesh/compiled/snapshot.hpp"
#include "mesh/config/loader.hpp"

using namespace meshd::mesh;

namespace {

const char* kMesh = R"(
mesh: {name: m, spec: {egressFilter: {type: ALLOW_ALL}}}
virtualNodes:
  - name: client
    spec:
      backends:
        - virtualService: {virtualServiceName: shop.local}
        - virtualService: {virtualServiceName: Multi.Local}
        - virtualService: {virtualServiceName: direct.local}
        - virtualService: {virtualServiceName: empty.local}
  - name: v1
    spec:
      listeners: [{portMapping: {port: 8080, protocol: http}}]
      serviceDiscovery: {static: {endpoints: [{address: 10.0.0.1}]}}
  - name: v2
    spec:
      listeners: [{portMapping: {port: 8080, protocol: http}}]
      serviceDiscovery: {dns: {hostname: v2.local, responseType: ENDPOINTS}}
  - name: v3
    spec:
      listeners: [{portMapping: {port: 8080, protocol: http}}]
      serviceDiscovery: {static: {endpoints: [{address: 10.0.0.3, port: 9000}]}}
  - name: two-ports
    spec:
      listeners: [{portMapping: {port: 80, protocol: http}}, {portMapping: {port: 81, protocol: http}}]
      serviceDiscovery: {static: {endpoints: [{address: 10.0.0.4}]}}
virtualServices:
  - {name: shop.local, spec: {provider: {virtualRouter: {virtualRouterName: shop}}}}
  - {name: Multi.Local, spec: {provider: {virtualRouter: {virtualRouterName: multi}}}}
  - {name: direct.local, spec: {provider: {virtualNode: {virtualNodeName: two-ports}}}}
  - {name: empty.local, spec: {}}
virtualRouters:
  - name: shop
    spec: {listeners: [{portMapping: {port: 8080, protocol: http}}]}
  - name: multi
    spec: {listeners: [{portMapping: {port: 80, protocol: http}}, {portMapping: {port: 90, protocol: http}}]}
routes:
  - name: fallback
    virtualRouterName: shop
    spec:
      httpRoute:
        match: {prefix: /}
        action: {weightedTargets: [{virtualNode: v1, weight: 3}, {virtualNode: v2, weight: 1}]}
  - name: fallback-api
    virtualRouterName: shop
    spec:
      httpRoute:
        match: {prefix: /api}
        action: {weightedTargets: [{virtualNode: v3, weight: 1}]}
  - name: exact
    virtualRouterName: shop
    spec:
      priority: 5
      httpRoute:
        match: {path: {exact: /exact}}
        action: {weightedTargets: [{virtualNode: v2, weight: 1}]}
  - name: regex
    virtualRouterName: shop
    spec:
      priority: 6
      httpRoute:
        match: {path: {regex: "/items/[0-9]+"}}
        action: {weightedTargets: [{virtualNode: v2, weight: 1}]}
  - name: hdr-exact
    virtualRouterName: shop
    spec:
      priority: 10
      httpRoute:
        match: {prefix: /, headers: [{name: X-Exact, match: {exact: "yes"}}]}
        action: {weightedTargets: [{virtualNode: v3, weight: 1}]}
  - name: hdr-prefix
    virtualRouterName: shop
    spec:
      priority: 10
      httpRoute:
        match: {prefix: /, headers: [{name: x-prefix, match: {prefix: "ab"}}]}
        action: {weightedTargets: [{virtualNode: v3, weight: 1}]}
  - name: hdr-suffix
    virtualRouterName: shop
    spec:
      priority: 11
      httpRoute:
        match: {prefix: /, headers: [{name: x-suffix, match: {suffix: "yz"}}]}
        action: {weightedTargets: [{virtualNode: v3, weight: 1}]}
  - name: hdr-regex
    virtualRouterName: shop
    spec:
      priority: 12
      httpRoute:
        match: {prefix: /, headers: [{name: x-regex, match: {regex: "v[0-9]"}}]}
        action: {weightedTargets: [{virtualNode: v3, weight: 1}]}
  - name: hdr-range
    virtualRouterName: shop
    spec:
      priority: 13
      httpRoute:
        match: {prefix: /, headers: [{name: x-range, match: {range: {start: 10, end: 20}}}]}
        action: {weightedTargets: [{virtualNode: v3, weight: 1}]}
  - name: hdr-present
    virtualRouterName: shop
    spec:
      priority: 14
      httpRoute:
        match: {prefix: /, headers: [{name: x-present}]}
        action: {weightedTargets: [{virtualNode: v3, weight: 1}]}
  - name: hdr-invert
    virtualRouterName: shop
    spec:
      priority: 15
      httpRoute:
        match: {prefix: /inv, headers: [{name: x-user, invert: true, match: {exact: admin}}]}
        action: {weightedTargets: [{virtualNode: v3, weight: 1}]}
  - name: hdr-absent
    virtualRouterName: shop
    spec:
      priority: 16
      httpRoute:
        match: {prefix: /absent, headers: [{name: x-token, invert: true}]}
        action: {weightedTargets: [{virtualNode: v3, weight: 1}]}
  - name: query
    virtualRouterName: shop
    spec:
      priority: 17
      httpRoute:
        match: {prefix: /q, queryParameters: [{name: version, match: {exact: "2 beta"}}, {name: debug}]}
        action: {weightedTargets: [{virtualNode: v3, weight: 1}]}
  - name: method
    virtualRouterName: shop
    spec:
      priority: 18
      httpRoute:
        match: {prefix: /m, method: POST}
        action: {weightedTargets: [{virtualNode: v3, weight: 1}]}
  - name: scheme
    virtualRouterName: shop
    spec:
      priority: 19
      httpRoute:
        match: {prefix: /s, scheme: https}
        action: {weightedTargets: [{virtualNode: v3, weight: 1}]}
  - name: first-of-equal
    virtualRouterName: shop
    spec:
      priority: 30
      httpRoute:
        match: {prefix: /tie}
        action: {weightedTargets: [{virtualNode: v1, weight: 1}]}
  - name: second-of-equal
    virtualRouterName: shop
    spec:
      priority: 30
      httpRoute:
        match: {prefix: /tie}
        action: {weightedTargets: [{virtualNode: v2, weight: 1}]}
  - name: on-80
    virtualRouterName: multi
    spec:
      httpRoute:
        match: {prefix: /, port: 80}
        action: {weightedTargets: [{virtualNode: v1, weight: 1}]}
  - name: on-90
    virtualRouterName: multi
    spec:
      httpRoute:
        match: {prefix: /, port: 90}
        action: {weightedTargets: [{virtualNode: two-ports, weight: 1, port: 81}]}
)";

std::shared_ptr<const Snapshot> snapshot(const std::string& node = "client") {
  auto loaded = load_mesh_text(kMesh, "routing.yaml");
  INFO(loaded.diagnostics.format_all());
  REQUIRE(loaded.ok());
  Diagnostics diag;
  auto snap = Snapshot::compile(std::make_shared<const MeshConfig>(std::move(*loaded.config)), node, diag);
  REQUIRE(snap);
  return snap;
}

struct Req {
  std::string method = "GET";
  std::string scheme = "http";
  std::string path = "/";
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;
};

RouteDecision route(const Snapshot& s, const std::string& authority, const Req& r) {
  std::vector<HeaderField> fields;
  for (const auto& [n, v] : r.headers) fields.push_back({n, v});
  RequestView view;
  view.method = r.method;
  view.scheme = r.scheme;
  const std::string path = normalize_path(r.path);
  view.path = path;
  view.query = r.query;
  view.headers = fields;
  auto a = parse_authority(authority);
  REQUIRE(a);
  return s.route(a->host, a->port, view);
}

std::string route_name(const Snapshot& s, const std::string& authority, const Req& r) {
  auto d = route(s, authority, r);
  if (d.outcome != RouteDecision::Outcome::routed) return "<none>";
  return d.route->name;
}

}  // namespace

TEST_CASE("routes are tried by priority, then routes without one longest match first") {
  auto s = snapshot();
  const auto& listeners = *s->find_service("shop.local")->listeners;
  REQUIRE(listeners.size() == 1);
  std::vector<std::string> order;
  for (const auto& r : listeners[0].routes) order.push_back(r.name);
  const std::vector<std::string> expected = {
      "exact", "regex", "hdr-exact", "hdr-prefix", "hdr-suffix", "hdr-regex", "hdr-range", "hdr-present",
      "hdr-invert", "hdr-absent", "query", "method", "scheme", "first-of-equal", "second-of-equal",
      "fallback-api", "fallback"};
  CHECK(order == expected);
  CHECK(route_name(*s, "shop.local", {.path = "/tie"}) == "first-of-equal");
  CHECK(route_name(*s, "shop.local", {.path = "/api/x"}) == "fallback-api");
  CHECK(route_name(*s, "shop.local", {.path = "/other"}) == "fallback");
}

TEST_CASE("path matchers: exact and RE2 full match, after normalization") {
  auto s = snapshot();
  CHECK(route_name(*s, "shop.local", {.path = "/exact"}) == "exact");
  CHECK(route_name(*s, "shop.local", {.path = "/a/../exact"}) == "exact");
  CHECK(route_name(*s, "shop.local", {.path = "//exact"}) == "exact");
  CHECK(route_name(*s, "shop.local", {.path = "/exact/"}) == "fallback");
  CHECK(route_name(*s, "shop.local", {.path = "/items/42"}) == "regex");
  CHECK(route_name(*s, "shop.local", {.path = "/items/42x"}) == "fallback");  // full match, not search
  CHECK(route_name(*s, "shop.local", {.path = "/x/items/42"}) == "fallback");
}

TEST_CASE("header matchers: exact, prefix, suffix, regex, range, presence, names case-insensitive") {
  auto s = snapshot();
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-exact", "yes"}}}) == "hdr-exact");
  CHECK(route_name(*s, "shop.local", {.headers = {{"X-EXACT", "yes"}}}) == "hdr-exact");
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-exact", "Yes"}}}) == "fallback");
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-prefix", "abc"}}}) == "hdr-prefix");
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-prefix", "xab"}}}) == "fallback");
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-suffix", "xyz"}}}) == "hdr-suffix");
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-suffix", "yzx"}}}) == "fallback");
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-regex", "v7"}}}) == "hdr-regex");
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-regex", "v77"}}}) == "fallback");
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-range", "10"}}}) == "hdr-range");
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-range", "19"}}}) == "hdr-range");
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-range", "20"}}}) == "fallback");  // end exclusive
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-range", "9"}}}) == "fallback");
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-range", "1x"}}}) == "fallback");
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-present", ""}}}) == "hdr-present");
  // A repeated header matches on its values joined with ','.
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-suffix", "a"}, {"x-suffix", "xyz"}}}) == "hdr-suffix");
  CHECK(route_name(*s, "shop.local", {.headers = {{"x-exact", "yes"}, {"x-exact", "no"}}}) == "fallback");
}

TEST_CASE("invert negates a match, and presence") {
  auto s = snapshot();
  CHECK(route_name(*s, "shop.local", {.path = "/inv", .headers = {{"x-user", "bob"}}}) == "hdr-invert");
  CHECK(route_name(*s, "shop.local", {.path = "/inv"}) == "hdr-invert");  // absent: not "admin"
  CHECK(route_name(*s, "shop.local", {.path = "/inv", .headers = {{"x-user", "admin"}}}) == "fallback");
  CHECK(route_name(*s, "shop.local", {.path = "/absent"}) == "hdr-absent");
  CHECK(route_name(*s, "shop.local", {.path = "/absent", .headers = {{"x-token", "t"}}}) == "fallback");
}

TEST_CASE("query parameters, method and scheme") {
  auto s = snapshot();
  CHECK(route_name(*s, "shop.local", {.path = "/q", .query = "version=2+beta&debug"}) == "query");
  CHECK(route_name(*s, "shop.local", {.path = "/q", .query = "debug=1&version=2%20beta"}) == "query");
  CHECK(route_name(*s, "shop.local", {.path = "/q", .query = "version=2+beta"}) == "fallback");
  CHECK(route_name(*s, "shop.local", {.path = "/q", .query = "version=3&debug"}) == "fallback");
  CHECK(route_name(*s, "shop.local", {.method = "POST", .path = "/m"}) == "method");
  CHECK(route_name(*s, "shop.local", {.method = "GET", .path = "/m"}) == "fallback");
  CHECK(route_name(*s, "shop.local", {.scheme = "https", .path = "/s"}) == "scheme");
  CHECK(route_name(*s, "shop.local", {.scheme = "http", .path = "/s"}) == "fallback");
}

TEST_CASE("the authority's port picks the router listener") {
  auto s = snapshot();
  CHECK(route_name(*s, "multi.local:80", {}) == "on-80");
  CHECK(route_name(*s, "MULTI.local.:90", {}) == "on-90");
  auto d = route(*s, "multi.local", {});
  CHECK(d.outcome == RouteDecision::Outcome::no_listener);  // several listeners, no port
  d = route(*s, "multi.local:91", {});
  CHECK(d.outcome == RouteDecision::Outcome::no_listener);
  d = route(*s, "shop.local:8080", {});
  CHECK(d.outcome == RouteDecision::Outcome::routed);
  // A weighted target's port picks the node listener its cluster uses.
  d = route(*s, "multi.local:90", {});
  REQUIRE(d.route);
  const auto& c = s->clusters()[d.route->targets.at(0).cluster];
  CHECK(c.node_name == "two-ports");
  CHECK(c.port == 81);
}

TEST_CASE("virtual-node providers get one implicit route per node listener with the default retry policy") {
  auto s = snapshot();
  auto d = route(*s, "direct.local:81", {.path = "/anything"});
  REQUIRE(d.outcome == RouteDecision::Outcome::routed);
  CHECK(d.route->name.empty());
  CHECK(d.route->retry.is_default);
  CHECK(d.route->retry.max_retries == 2);
  CHECK(d.route->retry.retries_status(503));
  CHECK_FALSE(d.route->retry.retries_status(500));
  CHECK(d.route->timeouts.per_request.count() == 15000);
  CHECK(s->clusters()[d.route->targets.at(0).cluster].port == 81);
  CHECK(route(*s, "direct.local", {}).outcome == RouteDecision::Outcome::no_listener);
}

TEST_CASE("outside the mesh, no provider, no route") {
  auto s = snapshot();
  CHECK(route(*s, "example.com", {}).outcome == RouteDecision::Outcome::outside_mesh);
  CHECK(route(*s, "empty.local", {}).outcome == RouteDecision::Outcome::no_provider);
  CHECK(s->egress_filter() == EgressFilterType::ALLOW_ALL);
  // A node without backends reaches nothing in the mesh.
  auto v1 = snapshot("v1");
  CHECK(route(*v1, "shop.local", {}).outcome == RouteDecision::Outcome::outside_mesh);
}

TEST_CASE("an unknown node is reported with a suggestion") {
  auto loaded = load_mesh_text(kMesh, "routing.yaml");
  REQUIRE(loaded.ok());
  Diagnostics diag;
  auto snap = Snapshot::compile(std::make_shared<const MeshConfig>(std::move(*loaded.config)), "clinet", diag);
  CHECK_FALSE(snap);
  REQUIRE(diag.size() == 1);
  CHECK(diag.items()[0].message == "no virtual node named 'clinet' in the mesh file (did you mean 'client'?)");
}

TEST_CASE("weighted targets are drawn in proportion to their weights (100k draws within 0.5 points)") {
  auto s = snapshot();
  auto d = route(*s, "shop.local", {.path = "/"});
  REQUIRE(d.route->name == "fallback");
  REQUIRE(d.route->total_weight == 4);
  std::mt19937 rng(12345);
  std::uniform_int_distribution<std::uint32_t> dist(0, d.route->total_weight - 1);
  std::map<std::string, int> counts;
  constexpr int kDraws = 100000;
  for (int i = 0; i < kDraws; ++i) {
    counts[s->clusters()[d.route->pick(dist(rng)).cluster].node_name]++;
  }
  CHECK(std::abs(100.0 * counts["v1"] / kDraws - 75.0) < 0.5);
  CHECK(std::abs(100.0 * counts["v2"] / kDraws - 25.0) < 0.5);
}

TEST_CASE("a target with weight 0 is never drawn") {
  CompiledRoute r;
  r.targets = {{0, 0}, {1, 90}, {2, 10}};
  r.total_weight = 100;
  int zero = 0, ninety = 0;
  for (std::uint32_t draw = 0; draw < 100; ++draw) {
    const auto& t = r.pick(draw);
    if (t.cluster == 0) ++zero;
    if (t.cluster == 1) ++ninety;
  }
  CHECK(zero == 0);
  CHECK(ninety == 90);
}

TEST_CASE("retry policies: App Mesh's events map to statuses and failures") {
  RetryPolicy p;
  p.max_retries = 3;
  p.per_retry_timeout = Duration{500, DurationUnit::ms};
  p.http_retry_events = {HttpRetryEvent::gateway_error};
  auto spec = RetryPolicySpec::from(p);
  CHECK(spec.max_retries == 3);
  CHECK(spec.per_try_timeout.count() == 500);
  CHECK(spec.retries_status(502));
  CHECK(spec.retries_status(504));
  CHECK_FALSE(spec.retries_status(500));
  CHECK(spec.on_reset);
  CHECK(spec.on_connect_failure);
  p.http_retry_events = {HttpRetryEvent::server_error};
  spec = RetryPolicySpec::from(p);
  for (int code : {500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511}) CHECK(spec.retries_status(code));
  CHECK_FALSE(spec.retries_status(509));
  CHECK_FALSE(spec.retries_status(409));
  p.http_retry_events = {HttpRetryEvent::client_error};
  spec = RetryPolicySpec::from(p);
  CHECK(spec.retries_status(409));
  CHECK_FALSE(spec.on_reset);
  CHECK_FALSE(spec.on_connect_failure);
  p.http_retry_events.clear();
  p.tcp_retry_events = {TcpRetryEvent::connection_error};
  spec = RetryPolicySpec::from(p);
  CHECK(spec.on_connect_failure);
  CHECK_FALSE(spec.retries_status(503));
  CHECK(spec.backoff_base.count() == 25);
  CHECK(spec.backoff_max.count() == 250);
  CHECK(spec.budget_percent == 20);
  CHECK(spec.budget_min_concurrent == 3);
}
