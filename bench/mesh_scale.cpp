// Scale check for the mesh file pipeline (issue 2): generates a mesh of N virtual
// services with M routes each (every route with a header match, two weighted
// targets, a retry policy and a timeout), then measures the YAML parse, validation,
// snapshot compilation, the cost of one routing decision and snapshot bytes per route.
// Not a test: run it by hand or from bench/ scripts; figures go to docs/benchmarks.md.
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

#include "mesh/config/loader.hpp"
#include "mesh/compiled/snapshot.hpp"
#include "bench/scale_mesh.hpp"

using namespace meshd::mesh;
using Clock = std::chrono::steady_clock;

namespace {

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

int main(int argc, char** argv) {
  int services = 1000, routes_per_service = 10, lookups = 1000000;
  const char* write_to = nullptr;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--services" && i + 1 < argc) services = std::atoi(argv[++i]);
    else if (a == "--routes-per-service" && i + 1 < argc) routes_per_service = std::atoi(argv[++i]);
    else if (a == "--lookups" && i + 1 < argc) lookups = std::atoi(argv[++i]);
    else if (a == "--write" && i + 1 < argc) write_to = argv[++i];
    else {
      std::fprintf(stderr, "usage: mesh_scale [--services N] [--routes-per-service M] [--lookups K] [--write FILE]\n");
      return 2;
    }
  }
  const std::string yaml = meshd::bench::scale_mesh(services, routes_per_service);
  if (write_to != nullptr) std::ofstream(write_to) << yaml;

  auto result = load_mesh_text(yaml, "scale.yaml");
  if (!result.ok()) {
    std::fprintf(stderr, "%s", result.diagnostics.format_all().c_str());
    return 1;
  }
  auto config = std::make_shared<const MeshConfig>(std::move(*result.config));

  const auto heap_before = mallinfo2().uordblks;
  const auto t0 = Clock::now();
  Diagnostics diag;
  auto snap = Snapshot::compile(config, "client", diag);
  const auto compile_time = Clock::now() - t0;
  const auto heap_after = mallinfo2().uordblks;
  if (!snap) return 1;

  // Routing decisions: a random service, and a tenant header that matches route k
  // (so the lookup walks k routes first), the way a request would.
  std::mt19937 rng(42);
  std::vector<std::string> hosts, paths, tenants;
  for (int i = 0; i < 1024; ++i) {
    const int s = static_cast<int>(rng() % static_cast<unsigned>(services));
    const int r = static_cast<int>(rng() % static_cast<unsigned>(routes_per_service));
    hosts.push_back("svc-" + std::to_string(s) + ".mesh.local");
    paths.push_back("/api/v" + std::to_string(r) + "/items");
    tenants.push_back("tenant-" + std::to_string(r));
  }
  std::size_t routed = 0;
  const auto t1 = Clock::now();
  for (int i = 0; i < lookups; ++i) {
    const std::size_t k = static_cast<std::size_t>(i) & 1023;
    HeaderField h{"x-tenant", tenants[k]};
    RequestView req;
    req.method = "GET";
    req.path = paths[k];
    req.headers = std::span<const HeaderField>(&h, 1);
    auto d = snap->route(hosts[k], std::nullopt, req);
    routed += d.outcome == RouteDecision::Outcome::routed ? 1 : 0;
  }
  const auto lookup_time = Clock::now() - t1;

  const double per_route = static_cast<double>(heap_after - heap_before) / static_cast<double>(snap->route_count());
  std::printf("| figure | value |\n|---|---|\n");
  std::printf("| mesh file | %d virtual services, %zu routes, %.1f MB of YAML |\n", services, snap->route_count(),
              static_cast<double>(yaml.size()) / 1e6);
  std::printf("| YAML parse (yaml-cpp alone) | %.0f ms |\n", ms(result.parse_time));
  std::printf("| typed reading and validation | %.0f ms |\n", ms(result.validate_time));
  std::printf("| snapshot compilation for one node | %.0f ms |\n", ms(compile_time));
  std::printf("| validate + compile (target < 1000 ms) | %.0f ms |\n", ms(result.validate_time + compile_time));
  std::printf("| routing decision, average of %d | %.0f ns |\n", lookups,
              std::chrono::duration<double, std::nano>(lookup_time).count() / lookups);
  std::printf("| snapshot heap per route | %.0f bytes |\n", per_route);
  std::printf("| requests routed | %zu of %d |\n", routed, lookups);
  return routed == static_cast<std::size_t>(lookups) ? 0 : 1;
}
