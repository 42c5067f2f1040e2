// Routing decisions on a fixed mesh for any request: path normalization, authority
// parsing, every matcher kind. Never crash; a routed decision names a route with a
// target.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "mesh/compiled/snapshot.hpp"
#include "mesh/config/loader.hpp"

namespace {
const char* kMesh = R"(
mesh: {name: m, spec: {egressFilter: {type: ALLOW_ALL}}}
virtualNodes:
  - name: client
    spec: {backends: [{virtualService: {virtualServiceName: svc.local}}, {virtualService: {virtualServiceName: multi.local}}]}
  - name: a
    spec: {listeners: [{portMapping: {port: 80, protocol: http}}], serviceDiscovery: {dns: {hostname: a}}}
virtualServices:
  - {name: svc.local, spec: {provider: {virtualRouter: {virtualRouterName: r}}}}
  - {name: multi.local, spec: {provider: {virtualRouter: {virtualRouterName: r2}}}}
virtualRouters:
  - {name: r, spec: {listeners: [{portMapping: {port: 80, protocol: http}}]}}
  - {name: r2, spec: {listeners: [{portMapping: {port: 80, protocol: http}}, {portMapping: {port: 81, protocol: http}}]}}
routes:
  - {name: re, virtualRouterName: r, spec: {priority: 1, httpRoute: {match: {path: {regex: "/a/[0-9]+(/.*)?"}}, action: {weightedTargets: [{virtualNode: a, weight: 1}]}}}}
  - {name: h, virtualRouterName: r, spec: {priority: 2, httpRoute: {match: {prefix: /, headers: [{name: x-a, match: {range: {start: -5, end: 5}}}, {name: x-b, invert: true, match: {suffix: z}}]}, action: {weightedTargets: [{virtualNode: a, weight: 1}]}}}}
  - {name: q, virtualRouterName: r, spec: {priority: 3, httpRoute: {match: {prefix: /q, queryParameters: [{name: k, match: {exact: "v w"}}], method: POST}, action: {weightedTargets: [{virtualNode: a, weight: 1}]}}}}
  - {name: p81, virtualRouterName: r2, spec: {httpRoute: {match: {prefix: /, port: 81}, action: {weightedTargets: [{virtualNode: a, weight: 1}]}}}}
  - {name: p80, virtualRouterName: r2, spec: {httpRoute: {match: {prefix: /, port: 80}, action: {weightedTargets: [{virtualNode: a, weight: 1}]}}}}
)";

std::shared_ptr<const meshd::mesh::Snapshot> snapshot() {
  static auto snap = [] {
    auto r = meshd::mesh::load_mesh_text(kMesh, "m.yaml");
    if (!r.ok()) std::abort();
    meshd::mesh::Diagnostics diag;
    return meshd::mesh::Snapshot::compile(std::make_shared<const meshd::mesh::MeshConfig>(std::move(*r.config)),
                                          "client", diag);
  }();
  return snap;
}
}  // namespace

// Input: authority \n method \n target \n header-name \n header-value ...
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= text.size() && parts.size() < 12) {
    auto nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    parts.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  while (parts.size() < 3) parts.emplace_back();
  auto authority = meshd::mesh::parse_authority(parts[0]);
  if (!authority) return 0;
  const std::string& target = parts[2];
  const auto q = target.find('?');
  const std::string path = meshd::mesh::normalize_path(target.substr(0, q));
  if (path.empty() || path[0] != '/') std::abort();
  std::vector<meshd::mesh::HeaderField> headers;
  for (std::size_t i = 3; i + 1 < parts.size(); i += 2) headers.push_back({parts[i], parts[i + 1]});
  meshd::mesh::RequestView req;
  req.method = parts[1];
  req.path = path;
  req.query = q == std::string::npos ? std::string_view() : std::string_view(target).substr(q + 1);
  req.headers = headers;
  const auto d = snapshot()->route(authority->host, authority->port, req);
  if (d.outcome == meshd::mesh::RouteDecision::Outcome::routed && (d.route == nullptr || d.route->targets.empty())) {
    std::abort();
  }
  return 0;
}
