#include "proxy/capabilities.hpp"

#include <set>
#include <type_traits>
#include <utility>
#include <variant>

#include "mesh/cluster/endpoints.hpp"
#include "mesh/config/names.hpp"

namespace meshd::proxy {

namespace {

constexpr const char* kTls = "issue 13: TLS and mTLS";

// Why a protocol is refused, and which issue brings it (http, http2 and grpc are served).
std::string protocol_reason(mesh::Protocol p) {
  if (p == mesh::Protocol::tcp) {
    return "tcp needs TCP proxying, which this build does not do yet (issue 14: TCP, tunnels and "
           "interception); http, http2 and grpc work";
  }
  return {};
}

bool served(mesh::Protocol p) { return p != mesh::Protocol::tcp; }

std::string issue_of(mesh::Protocol /*p*/) { return "issue 14: TCP, tunnels and interception"; }

mesh::Protocol pool_protocol(const mesh::ConnectionPool& pool) {
  return std::visit(
      [](const auto& k) {
        using T = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<T, mesh::TcpPool>) return mesh::Protocol::tcp;
        if constexpr (std::is_same_v<T, mesh::HttpPool>) return mesh::Protocol::http;
        if constexpr (std::is_same_v<T, mesh::Http2Pool>) return mesh::Protocol::http2;
        return mesh::Protocol::grpc;
      },
      pool.kind);
}

class Checker {
 public:
  explicit Checker(const mesh::Snapshot& snap) : snap_(snap), cfg_(snap.config()) {}

  std::vector<Unsupported> run() {
    own_node();
    // Everything reachable through the backends: the routers and their routes...
    for (const auto& service : snap_.services()) {
      const auto* vs = service.service;
      if (vs == nullptr || !vs->provider) continue;
      if (vs->provider->kind == mesh::VirtualServiceProvider::Kind::virtual_router) {
        if (const auto* vr = cfg_.find_router(vs->provider->name)) check_router(*vr);
      }
    }
    // ...and the listener of every node this sidecar may call (a virtual-node
    // provider's listeners and every weighted target are clusters).
    for (const auto& c : snap_.clusters()) called_listener(c);
    return std::move(out_);
  }

 private:
  // The node's own sidecar serves its listeners (ingress; a node with several is
  // served on --ingress-port and --ingress-port LISTENER_PORT=PORT, checked by the
  // server) and applies its client policies (egress). Health checks, outlier
  // detection and load balancing of its listeners are applied by its callers.
  void own_node() {
    const auto& self = snap_.node();
    const std::string np = node_path(self);
    for (std::size_t l = 0; l < self.spec.listeners.size(); ++l) {
      const auto& listener = self.spec.listeners[l];
      const std::string lp = np + ".spec.listeners[" + std::to_string(l) + "]";
      const auto protocol = listener.port_mapping.protocol;
      if (!served(protocol)) add(lp + ".portMapping.protocol", protocol_reason(protocol));
      // Validation makes a listener's connection pool and timeout match its protocol.
      if (listener.connection_pool) {
        const auto p = pool_protocol(*listener.connection_pool);
        if (!served(p)) {
          add(lp + ".connectionPool." + std::string(mesh::to_string(p)),
              "a " + std::string(mesh::to_string(p)) + " connection pool goes with a " +
                  std::string(mesh::to_string(p)) + " listener (" + issue_of(p) +
                  "); connectionPool.http, http2 and grpc work");
        }
      }
      if (listener.timeout && !served(listener.timeout->kind)) {
        const auto p = listener.timeout->kind;
        add(lp + ".timeout." + std::string(mesh::to_string(p)),
            "a " + std::string(mesh::to_string(p)) + " listener timeout goes with a " +
                std::string(mesh::to_string(p)) + " listener (" + issue_of(p) + "); timeout.http, http2 and grpc work");
      }
      if (listener.tls && listener.tls->mode != mesh::TlsMode::DISABLED) {
        add(lp + ".tls", "a " + std::string(mesh::to_string(listener.tls->mode)) +
                             " listener needs TLS termination, which arrives with " + kTls +
                             " (mode DISABLED works)");
      }
    }
    if (self.spec.backend_defaults && self.spec.backend_defaults->tls) {
      add(np + ".spec.backendDefaults.clientPolicy.tls",
          std::string("client TLS needs TLS origination, which arrives with ") + kTls);
    }
    for (std::size_t b = 0; b < self.spec.backends.size(); ++b) {
      const auto& backend = self.spec.backends[b];
      if (backend.client_policy && backend.client_policy->tls) {
        add(np + ".spec.backends[" + std::to_string(b) + "].virtualService.clientPolicy.tls",
            std::string("client TLS needs TLS origination, which arrives with ") + kTls);
      }
    }
  }

  void check_router(const mesh::VirtualRouter& vr) {
    if (!seen_routers_.insert(&vr).second) return;
    const std::string rp = "virtualRouters[" + std::to_string(&vr - cfg_.virtual_routers.data()) + "]";
    for (std::size_t l = 0; l < vr.listeners.size(); ++l) {
      const auto protocol = vr.listeners[l].protocol;
      if (!served(protocol)) {
        add(rp + ".spec.listeners[" + std::to_string(l) + "].portMapping.protocol", protocol_reason(protocol));
      }
    }
    // Validation gives a route the protocol of its router listener, so these only
    // appear next to a refused listener; each is named so that none is missed.
    for (std::size_t i = 0; i < cfg_.routes.size(); ++i) {
      const auto& route = cfg_.routes[i];
      if (route.virtual_router_name != vr.name || served(route.kind)) continue;
      const std::string key(mesh::route_key(route.kind));
      add("routes[" + std::to_string(i) + "].spec." + key,
          key + " needs TCP proxying (issue 14: TCP, tunnels and interception); httpRoute, http2Route and "
                "grpcRoute work");
    }
  }

  // The listener a cluster calls: what its callers must speak, and check.
  void called_listener(const mesh::Cluster& c) {
    const mesh::Listener* listener = mesh::cluster_listener(c);
    if (listener == nullptr) return;
    const std::string lp = node_path(*c.node) + ".spec.listeners[" +
                           std::to_string(listener - c.node->spec.listeners.data()) + "]";
    const auto protocol = listener->port_mapping.protocol;
    if (!served(protocol)) add(lp + ".portMapping.protocol", protocol_reason(protocol));
    if (listener->tls && listener->tls->mode == mesh::TlsMode::STRICT) {
      add(lp + ".tls", std::string("a STRICT listener takes only TLS: calling it needs TLS origination, which "
                                   "arrives with ") +
                           kTls);
    } else if (listener->tls && listener->tls->mode == mesh::TlsMode::PERMISSIVE) {
      add(lp + ".tls", std::string("App Mesh's sidecars call a PERMISSIVE listener over TLS (plaintext would be "
                                   "weaker); TLS origination arrives with ") +
                           kTls);
    }
  }

  std::string node_path(const mesh::VirtualNode& n) const {
    return "virtualNodes[" + std::to_string(&n - cfg_.virtual_nodes.data()) + "]";
  }
  void add(std::string path, std::string reason) {
    if (seen_paths_.insert(path).second) out_.push_back({std::move(path), std::move(reason)});
  }

  const mesh::Snapshot& snap_;
  const mesh::MeshConfig& cfg_;
  std::vector<Unsupported> out_;
  std::set<std::string> seen_paths_;
  std::set<const mesh::VirtualRouter*> seen_routers_;
};

}  // namespace

std::vector<Unsupported> unsupported_features(const mesh::Snapshot& snap) { return Checker(snap).run(); }

}  // namespace meshd::proxy
