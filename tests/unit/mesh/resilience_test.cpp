// The resilience state machines with an injected clock.
#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "mesh/cluster/endpoints.hpp"
#include "mesh/cluster/outlier_detector.hpp"
#include "mesh/cluster/resilience.hpp"
#include "mesh/config/loader.hpp"

using namespace meshd::mesh;
using std::chrono::milliseconds;

namespace {
std::vector<std::shared_ptr<Endpoint>> endpoints(int n) {
  std::vector<std::shared_ptr<Endpoint>> out;
  for (int i = 0; i < n; ++i) {
    auto e = std::make_shared<Endpoint>();
    e->ip = *meshd::net::parse_ip("10.0.0." + std::to_string(i + 1));
    e->port = 80;
    e->text = "10.0.0." + std::to_string(i + 1) + ":80";
    out.push_back(e);
  }
  return out;
}
}  // namespace

TEST_CASE("health: usable at the first pass, then thresholds both ways") {
  HealthState h(2, 3);
  CHECK_FALSE(h.healthy());
  CHECK(h.record(true));  // first pass
  CHECK(h.record(false));
  CHECK(h.record(false));
  CHECK_FALSE(h.record(false));  // third failure in a row
  CHECK_FALSE(h.record(true));   // one pass is not enough to recover
  CHECK(h.record(true));
  HealthState late(2, 2);
  CHECK_FALSE(late.record(false));  // a failing new endpoint is not usable
  CHECK(late.checked_once());
  CHECK_FALSE(late.record(false));
  CHECK(late.record(true));  // until its first pass
}

TEST_CASE("ejection durations and limits") {
  CHECK(ejection_duration(milliseconds(30000), 1) == milliseconds(30000));
  CHECK(ejection_duration(milliseconds(30000), 3) == milliseconds(90000));
  CHECK(ejection_duration(milliseconds(30000), 50) == milliseconds(300000));  // capped at 300 s
  CHECK(ejection_duration(milliseconds(600000), 2) == milliseconds(600000));  // max(base, 300 s)
  CHECK(max_ejected(10, 50) == 5);
  CHECK(max_ejected(3, 10) == 1);  // at least one
  CHECK(max_ejected(4, 100) == 4);
  CHECK(max_ejected(0, 50) == 0);
}

TEST_CASE("retry budget and backoff") {
  CHECK(retry_budget_allows(2, 0, 20, 3));
  CHECK_FALSE(retry_budget_allows(3, 10, 20, 3));
  CHECK(retry_budget_allows(19, 100, 20, 3));
  CHECK_FALSE(retry_budget_allows(20, 100, 20, 3));
  CHECK(backoff_ceiling(milliseconds(25), milliseconds(250), 0) == milliseconds(25));
  CHECK(backoff_ceiling(milliseconds(25), milliseconds(250), 2) == milliseconds(100));
  CHECK(backoff_ceiling(milliseconds(25), milliseconds(250), 10) == milliseconds(250));
}

TEST_CASE("token bucket: a burst of the rate, then one token per interval") {
  TokenBucket b(10, std::chrono::seconds(1));
  const std::chrono::nanoseconds t0 = std::chrono::seconds(1000);
  for (int i = 0; i < 10; ++i) CHECK_FALSE(b.take(t0));
  auto wait = b.take(t0);
  REQUIRE(wait);
  CHECK(*wait == milliseconds(100));
  CHECK(b.take(t0 + milliseconds(50)));
  CHECK_FALSE(b.take(t0 + milliseconds(100)));
  CHECK(b.take(t0 + milliseconds(100)));
}

TEST_CASE("round robin skips unusable endpoints; the panic threshold spreads over all") {
  auto eps = endpoints(4);
  std::mt19937_64 rng(1);
  LbInput in;
  in.endpoints = &eps;
  eps[1]->healthy = false;
  std::map<std::string, int> seen;
  for (std::uint32_t i = 0; i < 30; ++i) {
    in.round_robin = i;
    seen[pick_endpoint(in, rng)->text]++;
  }
  CHECK(seen.count("10.0.0.2:80") == 0);
  CHECK(seen.size() == 3);
  eps[0]->healthy = false;
  eps[2]->ejected = true;  // 1 of 4 usable: below half, so all four get traffic
  seen.clear();
  for (std::uint32_t i = 0; i < 40; ++i) {
    in.round_robin = i;
    seen[pick_endpoint(in, rng)->text]++;
  }
  CHECK(seen.size() == 4);
}

TEST_CASE("least request prefers the endpoint with fewer active requests; random spreads") {
  auto eps = endpoints(2);
  eps[0]->active_requests = 10;
  std::mt19937_64 rng(7);
  LbInput in;
  in.endpoints = &eps;
  in.policy = LbPolicy::LEAST_REQUEST;
  int second = 0;
  for (int i = 0; i < 200; ++i) second += pick_endpoint(in, rng) == eps[1] ? 1 : 0;
  CHECK(second == 200);
  auto four = endpoints(4);
  in.endpoints = &four;
  in.policy = LbPolicy::RANDOM;
  std::map<const Endpoint*, int> counts;
  for (int i = 0; i < 4000; ++i) counts[pick_endpoint(in, rng).get()]++;
  REQUIRE(counts.size() == 4);
  for (const auto& [_, n] : counts) CHECK(std::abs(n - 1000) < 150);
}

TEST_CASE("ring hash: stable per key; removing one of 10 endpoints remaps about a tenth") {
  auto eps = endpoints(10);
  auto ring = build_ring(eps);
  std::mt19937_64 rng(3);
  LbInput in;
  in.endpoints = &eps;
  in.ring = &ring;
  in.policy = LbPolicy::RING_HASH;
  std::vector<std::string> before;
  for (int k = 0; k < 10000; ++k) {
    const std::string key = "user-" + std::to_string(k);
    in.hash_key = key;
    before.push_back(pick_endpoint(in, rng)->text);
    CHECK(pick_endpoint(in, rng)->text == before.back());
  }
  auto nine = eps;
  nine.erase(nine.begin() + 4);
  auto ring9 = build_ring(nine);
  in.endpoints = &nine;
  in.ring = &ring9;
  int moved = 0;
  for (int k = 0; k < 10000; ++k) {
    const std::string key = "user-" + std::to_string(k);
    in.hash_key = key;
    moved += pick_endpoint(in, rng)->text != before[static_cast<std::size_t>(k)] ? 1 : 0;
  }
  INFO("moved " << moved << " of 10000");
  CHECK(moved > 600);
  CHECK(moved < 1500);
  // Only the keys of the removed endpoint moved.
  int wrongly = 0;
  for (int k = 0; k < 10000; ++k) {
    const std::string key = "user-" + std::to_string(k);
    in.hash_key = key;
    if (before[static_cast<std::size_t>(k)] != "10.0.0.5:80" && pick_endpoint(in, rng)->text != before[static_cast<std::size_t>(k)]) ++wrongly;
  }
  CHECK(wrongly == 0);
}

TEST_CASE("outlier detector: ejects at maxServerErrors, within maxEjectionPercent, returns after the time") {
  auto loaded = load_mesh_text(R"(
mesh: {name: m}
virtualNodes:
  - name: client
    spec: {backends: [{virtualService: {virtualServiceName: b.local}}]}
  - name: b
    spec:
      listeners:
        - portMapping: {port: 80, protocol: http}
          outlierDetection: {maxServerErrors: 3, interval: {value: 10, unit: s},
                             baseEjectionDuration: {value: 30, unit: s}, maxEjectionPercent: 50}
      serviceDiscovery: {static: {endpoints: [{address: 10.0.0.1}, {address: 10.0.0.2}, {address: 10.0.0.3}, {address: 10.0.0.4}]}}
virtualServices:
  - {name: b.local, spec: {provider: {virtualNode: {virtualNodeName: b}}}}
)",
                                 "o.yaml");
  REQUIRE(loaded.ok());
  Diagnostics diag;
  auto snap = Snapshot::compile(std::make_shared<const MeshConfig>(std::move(*loaded.config)), "client", diag);
  EndpointRegistry registry;
  registry.set_snapshot(snap);
  auto table = registry.table();
  const auto& eps = (*table)[0]->endpoints;
  REQUIRE(eps.size() == 4);
  boost::asio::io_context ioc;
  OutlierDetector od(ioc);
  od.update(snap, table);
  const auto t0 = std::chrono::steady_clock::now();
  eps[0]->consecutive_5xx = 2;
  CHECK(od.sweep(t0) == 0);
  for (auto& e : eps) e->consecutive_5xx = 3;
  CHECK(od.sweep(t0) == 2);  // 50 % of 4
  int ejected = 0;
  for (auto& e : eps) ejected += e->ejected ? 1 : 0;
  CHECK(ejected == 2);
  CHECK((*table)[0]->node_state->ejections_total == 2);
  CHECK(od.sweep(t0 + std::chrono::seconds(29)) == 0);  // still out, and the others wait for room
  CHECK(od.sweep(t0 + std::chrono::seconds(30)) == 2);  // back in; the other two go out now
  // The first two return with their counters reset; a second ejection lasts twice as long.
  eps[0]->consecutive_5xx = 3;
  od.sweep(t0 + std::chrono::seconds(61));  // the second pair returns at 60 s
  REQUIRE(eps[0]->ejected);
  CHECK(eps[0]->ejections == 2);
  CHECK(eps[0]->ejected_until == t0 + std::chrono::seconds(61) + std::chrono::seconds(60));
}
