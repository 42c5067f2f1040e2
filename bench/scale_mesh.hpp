#pragma once
// A generated mesh for scale figures: `services` virtual services, each behind a
// router with `routes_per_service` routes (a prefix and a header match, two weighted
// targets, a retry policy and a timeout each), and a node "client" with all of them
// as backends.
#include <string>

namespace meshd::bench {

inline std::string scale_mesh(int services, int routes_per_service) {
  std::string y;
  y.reserve(static_cast<std::size_t>(services) * routes_per_service * 600);
  y += "mesh: {name: scale}\nvirtualNodes:\n  - name: client\n    spec:\n      backends:\n";
  for (int s = 0; s < services; ++s) {
    y += "        - virtualService: {virtualServiceName: svc-" + std::to_string(s) + ".mesh.local}\n";
  }
  for (int s = 0; s < services; ++s) {
    for (const char* v : {"a", "b"}) {
      y += "  - name: svc-" + std::to_string(s) + "-" + v + "\n    spec:\n";
      y += "      listeners: [{portMapping: {port: 8080, protocol: http}}]\n";
      y += "      serviceDiscovery: {dns: {hostname: svc-" + std::to_string(s) + "-" + v + ".mesh.local}}\n";
    }
  }
  y += "virtualServices:\n";
  for (int s = 0; s < services; ++s) {
    y += "  - name: svc-" + std::to_string(s) + ".mesh.local\n    spec: {provider: {virtualRouter: {virtualRouterName: router-" +
         std::to_string(s) + "}}}\n";
  }
  y += "virtualRouters:\n";
  for (int s = 0; s < services; ++s) {
    y += "  - name: router-" + std::to_string(s) + "\n    spec: {listeners: [{portMapping: {port: 8080, protocol: http}}]}\n";
  }
  y += "routes:\n";
  for (int s = 0; s < services; ++s) {
    for (int r = 0; r < routes_per_service; ++r) {
      const std::string node = "svc-" + std::to_string(s);
      y += "  - name: route-" + std::to_string(r) + "\n    virtualRouterName: router-" + std::to_string(s) + "\n";
      y += "    spec:\n      priority: " + std::to_string(r) + "\n      httpRoute:\n";
      y += "        match:\n          prefix: /api/v" + std::to_string(r) + "\n";
      y += "          headers: [{name: x-tenant, match: {exact: tenant-" + std::to_string(r) + "}}]\n";
      y += "        action:\n          weightedTargets:\n";
      y += "            - {virtualNode: " + node + "-a, weight: 90}\n            - {virtualNode: " + node + "-b, weight: 10}\n";
      y += "        retryPolicy:\n          maxRetries: 2\n          perRetryTimeout: {value: 2, unit: s}\n";
      y += "          httpRetryEvents: [server-error, gateway-error]\n";
      y += "        timeout: {perRequest: {value: 15, unit: s}}\n";
    }
  }
  return y;
}

}  // namespace meshd::bench
