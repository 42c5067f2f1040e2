// Microbenchmarks (Google Benchmark): the HTTP/1.1 codec, route lookup on a
// 1,000-service mesh, and endpoint selection for each load-balancing policy.
//   ./build/bench/micro_bench
#include <benchmark/benchmark.h>

#include <random>

#include "bench/scale_mesh.hpp"
#include "mesh/cluster/endpoints.hpp"
#include "mesh/cluster/resilience.hpp"
#include "mesh/compiled/snapshot.hpp"
#include "mesh/config/loader.hpp"
#include "mesh/config/names.hpp"
#include "proxy/http1_codec.hpp"
#include "proxy/http1_write.hpp"

using namespace meshd;

namespace {

const std::string kRequest =
    "GET /api/v3/items?id=42 HTTP/1.1\r\nHost: svc-17.mesh.local\r\nUser-Agent: bench/1.0\r\n"
    "Accept: */*\r\nX-Tenant: tenant-3\r\nX-Request-Id: 6f1c2a3b-1111-4222-8333-444455556666\r\n\r\n";

void BM_parse_request_head(benchmark::State& state) {
  for (auto _ : state) {
    proxy::Http1Parser p(proxy::Http1Parser::Kind::request, {});
    auto head = p.parse(kRequest);
    auto done = p.parse({});
    benchmark::DoNotOptimize(head);
    benchmark::DoNotOptimize(done);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kRequest.size()));
}
BENCHMARK(BM_parse_request_head);

void BM_parse_and_rebuild_request(benchmark::State& state) {
  proxy::Http1Parser p(proxy::Http1Parser::Kind::request, {});
  std::string out;
  std::vector<proxy::Field> fields;
  for (auto _ : state) {
    p.parse(kRequest);
    p.parse({});
    out.clear();
    // What the HTTP/1.1 server adapter and client adapter do with a head.
    proxy::end_to_end_fields(p.head(), true, fields);
    proxy::RequestHead head;
    head.method = p.head().method;
    head.fields = fields;
    proxy::OutgoingRequest r;
    r.head = &head;
    r.path = "/api/v3/items?id=42";
    r.authority = "svc-17.mesh.local";
    r.forwarded_for = "127.0.0.1";
    proxy::build_request_head(r, out);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_parse_and_rebuild_request);

std::shared_ptr<const mesh::Snapshot> scale_snapshot() {
  static auto snap = [] {
    auto result = mesh::load_mesh_text(bench::scale_mesh(1000, 10), "scale.yaml");
    mesh::Diagnostics diag;
    return mesh::Snapshot::compile(std::make_shared<const mesh::MeshConfig>(std::move(*result.config)), "client", diag);
  }();
  return snap;
}

void BM_route_lookup_1000_services(benchmark::State& state) {
  auto snap = scale_snapshot();
  std::mt19937 rng(1);
  std::vector<std::string> hosts, paths, tenants;
  for (int i = 0; i < 1024; ++i) {
    const int s = static_cast<int>(rng() % 1000), r = static_cast<int>(rng() % 10);
    hosts.push_back("svc-" + std::to_string(s) + ".mesh.local");
    paths.push_back("/api/v" + std::to_string(r) + "/items");
    tenants.push_back("tenant-" + std::to_string(r));
  }
  std::size_t i = 0;
  for (auto _ : state) {
    const std::size_t k = i++ & 1023;
    mesh::HeaderField h{"x-tenant", tenants[k]};
    mesh::RequestView req;
    req.method = "GET";
    req.path = paths[k];
    req.headers = std::span<const mesh::HeaderField>(&h, 1);
    auto d = snap->route(hosts[k], std::nullopt, req);
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(BM_route_lookup_1000_services);

void BM_pick_endpoint(benchmark::State& state) {
  const auto policy = static_cast<mesh::LbPolicy>(state.range(0));
  std::vector<std::shared_ptr<mesh::Endpoint>> eps;
  for (int i = 0; i < 10; ++i) {
    auto e = std::make_shared<mesh::Endpoint>();
    e->text = "10.0.0." + std::to_string(i) + ":80";
    eps.push_back(e);
  }
  const auto ring = mesh::build_ring(eps);
  std::mt19937_64 rng(3);
  std::vector<std::string> keys;
  for (int i = 0; i < 256; ++i) keys.push_back("user-" + std::to_string(i));
  std::uint32_t n = 0;
  for (auto _ : state) {
    mesh::LbInput in;
    in.endpoints = &eps;
    in.ring = &ring;
    in.policy = policy;
    in.round_robin = n++;
    in.hash_key = keys[n & 255];
    benchmark::DoNotOptimize(mesh::pick_endpoint(in, rng));
  }
  state.SetLabel(std::string(mesh::to_string(policy)));
}
BENCHMARK(BM_pick_endpoint)->DenseRange(0, 3);

}  // namespace

BENCHMARK_MAIN();
