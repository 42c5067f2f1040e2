#include "proxy/capabilities.hpp"

#include <set>

#include "mesh/names.hpp"

namespace meshd::proxy {

namespace {

class Checker {
 public:
  explicit Checker(const mesh::Snapshot& snap) : snap_(snap), cfg_(snap.config()) {}

  std::vector<Unsupported> run() {
    const auto& self = snap_.node();
    const std::string self_path = node_path(self);
    for (std::size_t l = 0; l < self.spec.listeners.size(); ++l) {
      const auto& listener = self.spec.listeners[l];
      const std::string lp = self_path + ".spec.listeners[" + std::to_string(l) + "]";
      protocol(listener.port_mapping.protocol, lp + ".portMapping.protocol");
      if (listener.tls && listener.tls->mode != mesh::TlsMode::DISABLED) add(lp + ".tls", "TLS listeners arrive with mTLS");
    }
    client_policies(self, self_path);
    // Everything reachable through the backends.
    for (const auto& service : snap_.services()) {
      const auto* vs = service.service;
      if (vs == nullptr || !vs->provider) continue;
      if (vs->provider->kind == mesh::VirtualServiceProvider::Kind::virtual_router) {
        const auto* router = cfg_.find_router(vs->provider->name);
        if (router == nullptr) continue;
        const std::string rp = "virtualRouters[" + std::to_string(router - cfg_.virtual_routers.data()) + "]";
        for (std::size_t l = 0; l < router->listeners.size(); ++l) {
          protocol(router->listeners[l].protocol, rp + ".spec.listeners[" + std::to_string(l) + "].portMapping.protocol");
        }
      }
    }
    for (const auto& c : snap_.clusters()) {
      if (c.node == nullptr || !seen_nodes_.insert(c.node).second) continue;
      const std::string np = node_path(*c.node);
      for (std::size_t l = 0; l < c.node->spec.listeners.size(); ++l) {
        const auto& listener = c.node->spec.listeners[l];
        const std::string lp = np + ".spec.listeners[" + std::to_string(l) + "]";
        protocol(listener.port_mapping.protocol, lp + ".portMapping.protocol");
        if (listener.tls && listener.tls->mode == mesh::TlsMode::STRICT) {
          add(lp + ".tls", "calling a STRICT TLS listener needs mTLS, which arrives later");
        }
        if (listener.health_check && listener.health_check->protocol != mesh::Protocol::http &&
            listener.health_check->protocol != mesh::Protocol::tcp) {
          add(lp + ".healthCheck.protocol", std::string(mesh::to_string(listener.health_check->protocol)) +
                                                " health checks arrive with HTTP/2 (http and tcp work)");
        }
      }

    }
    return std::move(out_);
  }

 private:
  std::string node_path(const mesh::VirtualNode& n) const {
    return "virtualNodes[" + std::to_string(&n - cfg_.virtual_nodes.data()) + "]";
  }
  void add(std::string path, std::string reason) {
    if (seen_paths_.insert(path).second) out_.push_back({std::move(path), std::move(reason)});
  }
  void protocol(mesh::Protocol p, const std::string& path) {
    if (p != mesh::Protocol::http) {
      add(path, std::string(mesh::to_string(p)) + " is not supported by this build yet (http is)");
    }
  }
  void client_policies(const mesh::VirtualNode& n, const std::string& np) {
    if (n.spec.backend_defaults && n.spec.backend_defaults->tls) {
      add(np + ".spec.backendDefaults.clientPolicy.tls", "client TLS arrives with mTLS");
    }
    for (std::size_t b = 0; b < n.spec.backends.size(); ++b) {
      const auto& backend = n.spec.backends[b];
      if (backend.client_policy && backend.client_policy->tls) {
        add(np + ".spec.backends[" + std::to_string(b) + "].virtualService.clientPolicy.tls",
            "client TLS arrives with mTLS");
      }
    }
  }

  const mesh::Snapshot& snap_;
  const mesh::MeshConfig& cfg_;
  std::vector<Unsupported> out_;
  std::set<std::string> seen_paths_;
  std::set<const mesh::VirtualNode*> seen_nodes_;
};

}  // namespace

std::vector<Unsupported> unsupported_features(const mesh::Snapshot& snap) { return Checker(snap).run(); }

}  // namespace meshd::proxy
