// Checks across resources: references, duplicate names, ports, and the App Mesh
// controller's rules that span more than one field (reference §3).
#include "mesh/config/validate.hpp"

#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "mesh/config/names.hpp"
#include "net/address.hpp"

namespace meshd::mesh {
namespace {

std::string idx(std::string_view list, std::size_t i) {
  return std::string(list) + "[" + std::to_string(i) + "]";
}

class Checker {
 public:
  Checker(const MeshConfig& cfg, const std::string& file, Diagnostics& diag)
      : cfg_(cfg), file_(file), diag_(diag) {}

  void run() {
    index_names();
    check_nodes();
    check_services();
    check_routers();
    check_routes();
    check_gateways();
    check_gateway_routes();
  }

 private:
  void error(Mark at, std::string path, std::string message) {
    diag_.add({file_, at.line, at.column, std::move(path), std::move(message)});
  }

  template <class T>
  void index(const std::vector<T>& items, std::string_view list, std::string_view what,
             std::unordered_map<std::string_view, const T*>& out) {
    out.reserve(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      const T& item = items[i];
      if (item.name.empty()) continue;  // already reported
      auto [it, inserted] = out.emplace(item.name, &item);
      if (!inserted) {
        error(item.mark, idx(list, i) + ".name",
              "duplicate " + std::string(what) + " name '" + item.name + "' (first at line " +
                  std::to_string(it->second->mark.line) + ")");
      }
    }
  }

  void index_names() {
    index(cfg_.virtual_nodes, "virtualNodes", "virtual node", nodes_);
    index(cfg_.virtual_services, "virtualServices", "virtual service", services_);
    index(cfg_.virtual_routers, "virtualRouters", "virtual router", routers_);
    index(cfg_.virtual_gateways, "virtualGateways", "virtual gateway", gateways_);
  }

  // A "did you mean" for a dangling reference.
  template <class Map>
  std::string hint(const Map& names, std::string_view wanted) {
    std::vector<std::string_view> candidates;
    candidates.reserve(names.size());
    for (const auto& [name, _] : names) candidates.push_back(name);
    auto best = closest_match(wanted, candidates);
    return best.empty() ? std::string() : " (did you mean '" + best + "'?)";
  }

  // Ports that a virtual service carries as TCP, for the "one TCP port" rule.
  std::vector<std::int32_t> tcp_ports_of(const VirtualService& vs) {
    std::vector<std::int32_t> ports;
    if (!vs.provider) return ports;
    if (vs.provider->kind == VirtualServiceProvider::Kind::virtual_router) {
      if (auto it = routers_.find(vs.provider->name); it != routers_.end()) {
        for (const auto& l : it->second->listeners) {
          if (l.protocol == Protocol::tcp) ports.push_back(l.port);
        }
      }
    } else if (auto it = nodes_.find(vs.provider->name); it != nodes_.end()) {
      for (const auto& l : it->second->spec.listeners) {
        if (l.port_mapping.protocol == Protocol::tcp) ports.push_back(l.port_mapping.port);
      }
    }
    return ports;
  }

  void check_nodes() {
    for (std::size_t i = 0; i < cfg_.virtual_nodes.size(); ++i) {
      const VirtualNode& node = cfg_.virtual_nodes[i];
      const std::string base = idx("virtualNodes", i) + ".spec";
      const auto& spec = node.spec;
      if (!spec.listeners.empty() && !spec.service_discovery) {
        error(node.spec_mark, base + ".serviceDiscovery",
              "a virtual node with listeners needs serviceDiscovery (dns, awsCloudMap or static)");
      }
      std::unordered_map<std::int32_t, std::size_t> ports;
      for (std::size_t l = 0; l < spec.listeners.size(); ++l) {
        const Listener& listener = spec.listeners[l];
        const std::string lp = base + "." + idx("listeners", l);
        const auto port = listener.port_mapping.port;
        const auto protocol = listener.port_mapping.protocol;
        if (port != 0 && !ports.emplace(port, l).second) {
          error(listener.mark, lp + ".portMapping.port",
                "port " + std::to_string(port) + " is already used by listeners[" +
                    std::to_string(ports[port]) + "]");
        }
        if (listener.health_check && listener.health_check->port && *listener.health_check->port != port) {
          error(listener.health_check->mark, lp + ".healthCheck.port",
                "must equal the listener's port " + std::to_string(port));
        }
        if (listener.connection_pool) {
          const Protocol pool = std::visit(
              [](const auto& p) {
                using T = std::decay_t<decltype(p)>;
                if constexpr (std::is_same_v<T, TcpPool>) return Protocol::tcp;
                if constexpr (std::is_same_v<T, HttpPool>) return Protocol::http;
                if constexpr (std::is_same_v<T, Http2Pool>) return Protocol::http2;
                return Protocol::grpc;
              },
              listener.connection_pool->kind);
          if (pool != protocol) {
            error(listener.connection_pool->mark, lp + ".connectionPool." + std::string(to_string(pool)),
                  "the connection pool must match the listener protocol " + std::string(to_string(protocol)));
          }
        }
        if (listener.timeout && listener.timeout->kind != protocol) {
          error(listener.timeout->mark, lp + ".timeout." + std::string(to_string(listener.timeout->kind)),
                "the timeout must match the listener protocol " + std::string(to_string(protocol)));
        }
      }
      if (spec.service_discovery) {
        if (const auto* st = std::get_if<StaticDiscovery>(&*spec.service_discovery)) {
          for (std::size_t e = 0; e < st->endpoints.size(); ++e) {
            const auto& ep = st->endpoints[e];
            if (!ep.address.empty() && !net::parse_ip(ep.address)) {
              error(ep.mark, base + ".serviceDiscovery.static." + idx("endpoints", e) + ".address",
                    "'" + ep.address + "' is not an IP address (use dns discovery for host names)");
            }
            if (!ep.port && spec.listeners.empty()) {
              error(node.mark, base + ".serviceDiscovery.static." + idx("endpoints", e) + ".port",
                    "an endpoint without a port needs a listener to take the port from");
            }
          }
        }
      }
      std::unordered_map<std::string_view, std::size_t> seen_backends;
      std::unordered_map<std::int32_t, std::string_view> tcp_ports;
      for (std::size_t b = 0; b < spec.backends.size(); ++b) {
        const Backend& backend = spec.backends[b];
        const std::string bp = base + "." + idx("backends", b) + ".virtualService.virtualServiceName";
        if (backend.virtual_service_name.empty()) continue;
        if (!seen_backends.emplace(backend.virtual_service_name, b).second) {
          error(backend.mark, bp,
                "duplicate backend '" + backend.virtual_service_name + "' (also backends[" +
                    std::to_string(seen_backends[backend.virtual_service_name]) + "])");
          continue;
        }
        auto it = services_.find(backend.virtual_service_name);
        if (it == services_.end()) {
          error(backend.mark, bp,
                "no virtual service named '" + backend.virtual_service_name + "'" +
                    hint(services_, backend.virtual_service_name));
          continue;
        }
        for (auto port : tcp_ports_of(*it->second)) {
          auto [pt, inserted] = tcp_ports.emplace(port, it->second->name);
          if (!inserted) {
            error(backend.mark, bp,
                  "TCP port " + std::to_string(port) + " is already carried by backend '" +
                      std::string(pt->second) +
                      "': two TCP backends cannot share a port (they are told apart by port only)");
          }
        }
      }
    }
  }

  void check_services() {
    for (std::size_t i = 0; i < cfg_.virtual_services.size(); ++i) {
      const VirtualService& vs = cfg_.virtual_services[i];
      if (!vs.provider || vs.provider->name.empty()) continue;
      const bool router = vs.provider->kind == VirtualServiceProvider::Kind::virtual_router;
      const std::string path = idx("virtualServices", i) + ".spec.provider." +
                               (router ? "virtualRouter.virtualRouterName" : "virtualNode.virtualNodeName");
      if (router && !routers_.count(vs.provider->name)) {
        error(vs.provider->mark, path,
              "no virtual router named '" + vs.provider->name + "'" + hint(routers_, vs.provider->name));
      } else if (!router && !nodes_.count(vs.provider->name)) {
        error(vs.provider->mark, path,
              "no virtual node named '" + vs.provider->name + "'" + hint(nodes_, vs.provider->name));
      }
    }
  }

  void check_routers() {
    for (std::size_t i = 0; i < cfg_.virtual_routers.size(); ++i) {
      const VirtualRouter& vr = cfg_.virtual_routers[i];
      std::unordered_set<std::int32_t> ports;
      for (std::size_t l = 0; l < vr.listeners.size(); ++l) {
        if (!ports.insert(vr.listeners[l].port).second) {
          error(vr.listener_marks[l], idx("virtualRouters", i) + ".spec." + idx("listeners", l) + ".portMapping.port",
                "port " + std::to_string(vr.listeners[l].port) + " is used by another listener of this router");
        }
      }
    }
  }

  void check_routes() {
    std::unordered_map<std::string, std::size_t> names;  // router + '\0' + route
    names.reserve(cfg_.routes.size());
    for (std::size_t i = 0; i < cfg_.routes.size(); ++i) {
      const Route& route = cfg_.routes[i];
      const std::string base = idx("routes", i);
      const std::string kind_key = base + ".spec." + std::string(route_key(route.kind));
      if (!route.name.empty() && !route.virtual_router_name.empty()) {
        auto [it, inserted] = names.emplace(route.virtual_router_name + '\0' + route.name, i);
        if (!inserted) {
          error(route.mark, base + ".name",
                "duplicate route name '" + route.name + "' in virtual router '" +
                    route.virtual_router_name + "' (first at routes[" + std::to_string(it->second) + "])");
        }
      }
      const VirtualRouter* router = nullptr;
      if (!route.virtual_router_name.empty()) {
        auto it = routers_.find(route.virtual_router_name);
        if (it == routers_.end()) {
          error(route.router_mark, base + ".virtualRouterName",
                "no virtual router named '" + route.virtual_router_name + "'" +
                    hint(routers_, route.virtual_router_name));
        } else {
          router = it->second;
        }
      }
      if (router != nullptr) check_route_ports(route, *router, kind_key);
      check_targets(route.action(), kind_key + ".action");
    }
  }

  void check_route_ports(const Route& route, const VirtualRouter& router, const std::string& kind_key) {
    const auto port = route.match_port();
    const std::string port_path = kind_key + ".match.port";
    if (port) {
      const PortMapping* listener = nullptr;
      for (const auto& l : router.listeners) {
        if (l.port == *port) listener = &l;
      }
      if (listener == nullptr) {
        error(route.match_port_mark, port_path,
              "virtual router '" + router.name + "' has no listener on port " + std::to_string(*port));
      } else if (listener->protocol != route.kind) {
        error(route.match_port_mark, port_path,
              "the listener on port " + std::to_string(*port) + " is " +
                  std::string(to_string(listener->protocol)) + ", but this is a " +
                  std::string(route_key(route.kind)));
      }
      return;
    }
    if (router.listeners.size() > 1) {
      error(route.mark, port_path,
            "virtual router '" + router.name + "' has " + std::to_string(router.listeners.size()) +
                " listeners, so the route's match needs a port");
      return;
    }
    if (router.listeners.size() == 1 && router.listeners[0].protocol != route.kind) {
      error(route.mark, kind_key,
            "virtual router '" + router.name + "' listens with protocol " +
                std::string(to_string(router.listeners[0].protocol)) + ", so its routes must be " +
                std::string(route_key(router.listeners[0].protocol)));
    }
  }

  void check_targets(const RouteAction& action, const std::string& base) {
    for (std::size_t t = 0; t < action.weighted_targets.size(); ++t) {
      const WeightedTarget& target = action.weighted_targets[t];
      const std::string tp = base + "." + idx("weightedTargets", t);
      if (target.virtual_node.empty()) continue;
      auto it = nodes_.find(target.virtual_node);
      if (it == nodes_.end()) {
        error(target.mark, tp + ".virtualNode",
              "no virtual node named '" + target.virtual_node + "'" + hint(nodes_, target.virtual_node));
        continue;
      }
      const auto& listeners = it->second->spec.listeners;
      if (target.port) {
        bool found = false;
        for (const auto& l : listeners) found = found || l.port_mapping.port == *target.port;
        if (!found) {
          error(target.port_mark, tp + ".port",
                "virtual node '" + target.virtual_node + "' has no listener on port " +
                    std::to_string(*target.port));
        }
      } else if (listeners.size() > 1) {
        error(target.mark, tp + ".port",
              "virtual node '" + target.virtual_node + "' has " + std::to_string(listeners.size()) +
                  " listeners, so the target needs a port");
      } else if (listeners.empty()) {
        error(target.mark, tp + ".virtualNode",
              "virtual node '" + target.virtual_node + "' has no listener, so it cannot receive traffic");
      }
    }
  }

  void check_gateways() {
    for (std::size_t i = 0; i < cfg_.virtual_gateways.size(); ++i) {
      const VirtualGateway& gw = cfg_.virtual_gateways[i];
      std::unordered_set<std::int32_t> ports;
      for (std::size_t l = 0; l < gw.listeners.size(); ++l) {
        const auto& listener = gw.listeners[l];
        const std::string lp = idx("virtualGateways", i) + ".spec." + idx("listeners", l);
        if (!ports.insert(listener.port_mapping.port).second) {
          error(listener.mark, lp + ".portMapping.port",
                "port " + std::to_string(listener.port_mapping.port) + " is used by another listener");
        }
        if (listener.health_check && listener.health_check->port &&
            *listener.health_check->port != listener.port_mapping.port) {
          error(listener.health_check->mark, lp + ".healthCheck.port",
                "must equal the listener's port " + std::to_string(listener.port_mapping.port));
        }
      }
    }
  }

  void check_gateway_routes() {
    std::unordered_map<std::string, std::size_t> names;
    for (std::size_t i = 0; i < cfg_.gateway_routes.size(); ++i) {
      const GatewayRoute& gr = cfg_.gateway_routes[i];
      const std::string base = idx("gatewayRoutes", i);
      const std::string kind_key = base + ".spec." + std::string(route_key(gr.kind));
      if (!gr.name.empty() && !gr.virtual_gateway_name.empty()) {
        auto [it, inserted] = names.emplace(gr.virtual_gateway_name + '\0' + gr.name, i);
        if (!inserted) {
          error(gr.mark, base + ".name",
                "duplicate gateway route name '" + gr.name + "' in virtual gateway '" +
                    gr.virtual_gateway_name + "' (first at gatewayRoutes[" + std::to_string(it->second) + "])");
        }
      }
      if (!gr.virtual_gateway_name.empty()) {
        auto it = gateways_.find(gr.virtual_gateway_name);
        if (it == gateways_.end()) {
          error(gr.gateway_mark, base + ".virtualGatewayName",
                "no virtual gateway named '" + gr.virtual_gateway_name + "'" +
                    hint(gateways_, gr.virtual_gateway_name));
        } else {
          const auto& listeners = it->second->listeners;
          if (auto port = gr.match_port()) {
            const GatewayListener* listener = nullptr;
            for (const auto& l : listeners) {
              if (l.port_mapping.port == *port) listener = &l;
            }
            if (listener == nullptr) {
              error(gr.match_port_mark, kind_key + ".match.port",
                    "virtual gateway '" + gr.virtual_gateway_name + "' has no listener on port " +
                        std::to_string(*port));
            }
          } else if (listeners.size() > 1) {
            error(gr.mark, kind_key + ".match.port",
                  "virtual gateway '" + gr.virtual_gateway_name + "' has " +
                      std::to_string(listeners.size()) + " listeners, so the match needs a port");
          }
        }
      }
      const GatewayTarget& target = gr.target();
      if (!target.virtual_service_name.empty() && !services_.count(target.virtual_service_name)) {
        error(target.mark, kind_key + ".action.target.virtualService.virtualServiceName",
              "no virtual service named '" + target.virtual_service_name + "'" +
                  hint(services_, target.virtual_service_name));
      }
    }
  }

  const MeshConfig& cfg_;
  const std::string& file_;
  Diagnostics& diag_;
  std::unordered_map<std::string_view, const VirtualNode*> nodes_;
  std::unordered_map<std::string_view, const VirtualService*> services_;
  std::unordered_map<std::string_view, const VirtualRouter*> routers_;
  std::unordered_map<std::string_view, const VirtualGateway*> gateways_;
};

}  // namespace

void validate_references(const MeshConfig& cfg, const std::string& file, Diagnostics& diag) {
  Checker(cfg, file, diag).run();
}

}  // namespace meshd::mesh
