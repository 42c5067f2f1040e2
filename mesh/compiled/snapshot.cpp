#include "mesh/compiled/snapshot.hpp"

#include <algorithm>

#include "mesh/config/names.hpp"
#include "net/intern.hpp"

namespace meshd::mesh {

RetryPolicySpec RetryPolicySpec::app_mesh_default() {
  RetryPolicySpec p;  // 2 retries on 503, reset, connect failure and refused stream
  p.status_5xx = 1u << 3;
  return p;
}

RetryPolicySpec RetryPolicySpec::from(const RetryPolicy& in) {
  RetryPolicySpec p;
  p.is_default = false;
  p.max_retries = static_cast<std::uint32_t>(in.max_retries);
  p.per_try_timeout = in.per_retry_timeout.millis();
  p.on_reset = false;
  p.on_connect_failure = false;
  p.on_refused_stream = false;
  for (auto ev : in.http_retry_events) {
    switch (ev) {
      case HttpRetryEvent::server_error:
        for (int code : {500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511}) p.status_5xx |= 1u << (code - 500);
        p.on_reset = p.on_connect_failure = p.on_refused_stream = true;
        break;
      case HttpRetryEvent::gateway_error:
        for (int code : {502, 503, 504}) p.status_5xx |= 1u << (code - 500);
        p.on_reset = p.on_connect_failure = p.on_refused_stream = true;
        break;
      case HttpRetryEvent::client_error:
        p.on_409 = true;
        break;
      case HttpRetryEvent::stream_error:
        p.on_refused_stream = true;
        break;
    }
  }
  for (auto ev : in.tcp_retry_events) {
    if (ev == TcpRetryEvent::connection_error) p.on_connect_failure = true;
  }
  for (auto ev : in.grpc_retry_events) p.grpc_codes |= static_cast<std::uint8_t>(1u << static_cast<int>(ev));
  if (in.backoff) {
    if (in.backoff->base_interval) p.backoff_base = in.backoff->base_interval->millis();
    if (in.backoff->max_interval) p.backoff_max = in.backoff->max_interval->millis();
    if (p.backoff_max < p.backoff_base) p.backoff_max = p.backoff_base;
  }
  if (in.budget) {
    if (in.budget->percent) p.budget_percent = static_cast<std::uint32_t>(*in.budget->percent);
    if (in.budget->min_concurrent) p.budget_min_concurrent = static_cast<std::uint32_t>(*in.budget->min_concurrent);
  }
  return p;
}

const Target& CompiledRoute::pick(std::uint32_t draw) const {
  for (const auto& t : targets) {
    if (draw < t.weight) return t;
    draw -= t.weight;
  }
  return targets.back();
}

std::string Cluster::describe_discovery() const {
  if (node == nullptr || !node->spec.service_discovery) return "none";
  return std::visit(
      [&](const auto& d) -> std::string {
        using T = std::decay_t<decltype(d)>;
        if constexpr (std::is_same_v<T, StaticDiscovery>) {
          std::string out = "static";
          for (std::size_t i = 0; i < d.endpoints.size(); ++i) {
            const auto& ep = d.endpoints[i];
            const bool v6 = ep.address.find(':') != std::string::npos;
            out += i == 0 ? " " : ", ";
            out += v6 ? "[" + ep.address + "]" : ep.address;
            out += ":" + std::to_string(ep.port.value_or(port));
          }
          return out;
        } else if constexpr (std::is_same_v<T, DnsDiscovery>) {
          return "dns " + d.hostname + " port " + std::to_string(port) + " (" +
                 std::string(to_string(d.response_type.value_or(DnsResponseType::LOADBALANCER))) + ")";
        } else {
          return "awsCloudMap " + d.service_name + "." + d.namespace_name + " via DNS, port " +
                 std::to_string(port);
        }
      },
      *node->spec.service_discovery);
}

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  if (out.size() > 1 && out.back() == '.') out.pop_back();
  return out;
}

class Compiler {
 public:
  Compiler(const MeshConfig& cfg, std::vector<Cluster>& clusters,
           std::vector<std::vector<RouterListener>>& routers)
      : cfg_(cfg), clusters_(clusters), routers_(routers) {
    for (const auto& n : cfg.virtual_nodes) nodes_.emplace(n.name, &n);
    for (const auto& r : cfg.routes) routes_by_router_[r.virtual_router_name].push_back(&r);
  }

  const VirtualNode* node(std::string_view name) const {
    auto it = nodes_.find(name);
    return it == nodes_.end() ? nullptr : it->second;
  }

  std::uint32_t router(const VirtualRouter& vr) {
    const std::string key = std::string("router") + '\0' + vr.name;
    if (auto it = compiled_.find(key); it != compiled_.end()) return it->second;
    std::vector<RouterListener> listeners;
    const auto& routes = routes_by_router_[vr.name];
    for (const auto& l : vr.listeners) {
      RouterListener rl;
      rl.port = l.port;
      rl.protocol = l.protocol;
      std::vector<const Route*> mine;
      for (const Route* r : routes) {
        if (r->kind != l.protocol) continue;
        const auto mp = r->match_port();
        if (mp ? *mp == l.port : vr.listeners.size() == 1) mine.push_back(r);
      }
      for (const Route* r : mine) rl.routes.push_back(compile_route(*r));
      // Priority first (lower first); routes without one after, longest match first;
      // equal keys keep file order.
      std::stable_sort(rl.routes.begin(), rl.routes.end(), [](const CompiledRoute& a, const CompiledRoute& b) {
        if (a.priority.has_value() != b.priority.has_value()) return a.priority.has_value();
        if (a.priority) return *a.priority < *b.priority;
        return a.match.specificity() > b.match.specificity();
      });
      listeners.push_back(std::move(rl));
    }
    routers_.push_back(std::move(listeners));
    const auto index = static_cast<std::uint32_t>(routers_.size() - 1);
    compiled_.emplace(key, index);
    return index;
  }

  // A virtual-node provider: each node listener gets one implicit route to the node,
  // with App Mesh's default retry policy.
  std::uint32_t node_provider(const VirtualNode& vn) {
    const std::string key = std::string("node") + '\0' + vn.name;
    if (auto it = compiled_.find(key); it != compiled_.end()) return it->second;
    std::vector<RouterListener> listeners;
    for (const auto& l : vn.spec.listeners) {
      RouterListener rl;
      rl.port = l.port_mapping.port;
      rl.protocol = l.port_mapping.protocol;
      CompiledRoute route;
      route.label = net::empty_label();
      route.kind = l.port_mapping.protocol;
      route.match = RouteMatcher::match_all();
      route.targets.push_back({cluster(vn, l.port_mapping.port), 1});
      route.total_weight = 1;
      route.retry = RetryPolicySpec::app_mesh_default();
      rl.routes.push_back(std::move(route));
      listeners.push_back(std::move(rl));
    }
    routers_.push_back(std::move(listeners));
    const auto index = static_cast<std::uint32_t>(routers_.size() - 1);
    compiled_.emplace(key, index);
    return index;
  }

  std::size_t route_count() const { return route_count_; }

 private:
  std::uint32_t cluster(const VirtualNode& vn, std::int32_t port) {
    const std::string key = vn.name + '\0' + std::to_string(port);
    if (auto it = cluster_index_.find(key); it != cluster_index_.end()) return it->second;
    Cluster c;
    c.node_name = vn.name;
    c.label = net::intern(vn.name);
    c.port = port;
    c.node = &vn;
    for (const auto& l : vn.spec.listeners) {
      if (l.port_mapping.port == port) c.protocol = l.port_mapping.protocol;
    }
    clusters_.push_back(std::move(c));
    const auto index = static_cast<std::uint32_t>(clusters_.size() - 1);
    cluster_index_.emplace(key, index);
    return index;
  }

  CompiledRoute compile_route(const Route& r) {
    ++route_count_;
    CompiledRoute c;
    c.name = r.name;
    c.label = net::intern(r.name);
    c.kind = r.kind;
    c.priority = r.priority;
    const std::optional<RetryPolicy>* retry = nullptr;
    const std::optional<HttpTimeout>* timeout = nullptr;
    switch (r.kind) {
      case Protocol::http:
      case Protocol::http2:
        c.match = RouteMatcher::from_http(r.http.match);
        retry = &r.http.retry_policy;
        timeout = &r.http.timeout;
        break;
      case Protocol::grpc:
        c.match = RouteMatcher::from_grpc(r.grpc.match);
        retry = &r.grpc.retry_policy;
        timeout = &r.grpc.timeout;
        break;
      case Protocol::tcp:
        c.match = RouteMatcher::match_all();
        if (r.tcp.timeout && r.tcp.timeout->idle) c.timeouts.idle = r.tcp.timeout->idle->millis();
        c.timeouts.per_request = std::chrono::milliseconds(0);
        // TCP has no retry policy; a connect failure moves to another endpoint.
        c.retry = RetryPolicySpec::app_mesh_default();
        c.retry.status_5xx = 0;
        break;
    }
    if (retry != nullptr) c.retry = *retry ? RetryPolicySpec::from(**retry) : RetryPolicySpec::app_mesh_default();
    if (r.kind == Protocol::grpc && retry != nullptr && !*retry) {
      // App Mesh's hidden default retries gRPC on UNAVAILABLE as well (reference §2).
      c.retry.grpc_codes |= static_cast<std::uint8_t>(1u << static_cast<int>(GrpcRetryEvent::unavailable));
    }
    if (timeout != nullptr && *timeout) {
      if ((*timeout)->per_request) c.timeouts.per_request = (*timeout)->per_request->millis();
      if ((*timeout)->idle) c.timeouts.idle = (*timeout)->idle->millis();
    }
    for (const auto& t : r.action().weighted_targets) {
      const VirtualNode* vn = node(t.virtual_node);
      if (vn == nullptr || vn->spec.listeners.empty()) continue;  // rejected by validation
      const std::int32_t port = t.port.value_or(vn->spec.listeners.front().port_mapping.port);
      c.targets.push_back({cluster(*vn, port), static_cast<std::uint32_t>(t.weight)});
      c.total_weight += static_cast<std::uint32_t>(t.weight);
    }
    return c;
  }

  const MeshConfig& cfg_;
  std::vector<Cluster>& clusters_;
  std::vector<std::vector<RouterListener>>& routers_;
  std::unordered_map<std::string_view, const VirtualNode*> nodes_;
  std::unordered_map<std::string_view, std::vector<const Route*>> routes_by_router_;
  std::unordered_map<std::string, std::uint32_t> compiled_;
  std::unordered_map<std::string, std::uint32_t> cluster_index_;
  std::size_t route_count_ = 0;
};

}  // namespace

std::shared_ptr<const Snapshot> Snapshot::compile(std::shared_ptr<const MeshConfig> config,
                                                  const std::string& node_name, Diagnostics& diag,
                                                  const std::string& file) {
  auto snap = std::make_shared<Snapshot>();
  snap->config_ = std::move(config);
  const MeshConfig& cfg = *snap->config_;
  snap->node_ = cfg.find_node(node_name);
  if (snap->node_ == nullptr) {
    std::vector<std::string_view> names;
    for (const auto& n : cfg.virtual_nodes) names.push_back(n.name);
    std::string msg = "no virtual node named '" + node_name + "' in the mesh file";
    if (auto hint = closest_match(node_name, names); !hint.empty()) msg += " (did you mean '" + hint + "'?)";
    diag.add({file, 0, 0, "", msg});
    return nullptr;
  }
  snap->egress_filter_ = cfg.mesh.spec.egress_filter.value_or(EgressFilterType::DROP_ALL);

  Compiler compiler(cfg, snap->clusters_, snap->routers_);
  std::unordered_map<std::string_view, const VirtualService*> services;
  std::unordered_map<std::string_view, const VirtualRouter*> routers;
  for (const auto& s : cfg.virtual_services) services.emplace(s.name, &s);
  for (const auto& r : cfg.virtual_routers) routers.emplace(r.name, &r);

  std::vector<std::pair<std::size_t, std::uint32_t>> router_of;  // service index -> routers_ index
  for (const auto& backend : snap->node_->spec.backends) {
    auto it = services.find(backend.virtual_service_name);
    if (it == services.end()) continue;  // rejected by validation
    const VirtualService& vs = *it->second;
    ServiceEntry entry;
    entry.name = lower(vs.name);
    entry.label = net::intern(vs.name);
    entry.service = &vs;
    if (vs.provider) {
      entry.provider_name = vs.provider->name;
      if (vs.provider->kind == VirtualServiceProvider::Kind::virtual_router) {
        entry.provider = ServiceEntry::Provider::virtual_router;
        if (auto r = routers.find(vs.provider->name); r != routers.end()) {
          router_of.emplace_back(snap->services_.size(), compiler.router(*r->second));
        }
      } else {
        entry.provider = ServiceEntry::Provider::virtual_node;
        if (const VirtualNode* vn = compiler.node(vs.provider->name)) {
          router_of.emplace_back(snap->services_.size(), compiler.node_provider(*vn));
        }
      }
    }
    snap->services_.push_back(std::move(entry));
  }
  // Pointers and views only once the vectors are complete.
  for (auto [service, router] : router_of) snap->services_[service].listeners = &snap->routers_[router];
  snap->service_index_.reserve(snap->services_.size());
  for (std::uint32_t i = 0; i < snap->services_.size(); ++i) {
    snap->service_index_.emplace(snap->services_[i].name, i);
  }
  snap->route_count_ = compiler.route_count();
  return snap;
}

const ServiceEntry* Snapshot::find_service(std::string_view lower_host) const {
  auto it = service_index_.find(lower_host);
  return it == service_index_.end() ? nullptr : &services_[it->second];
}

RouteDecision Snapshot::route(std::string_view host, std::optional<std::uint16_t> port,
                              const RequestView& req) const {
  RouteDecision d;
  d.service = find_service(host);
  if (d.service == nullptr) {
    d.outcome = RouteDecision::Outcome::outside_mesh;
    return d;
  }
  if (d.service->provider == ServiceEntry::Provider::none || d.service->listeners == nullptr) {
    d.outcome = RouteDecision::Outcome::no_provider;
    return d;
  }
  const auto& listeners = *d.service->listeners;
  if (port) {
    for (const auto& l : listeners) {
      if (l.port == *port) d.listener = &l;
    }
  } else if (listeners.size() == 1) {
    d.listener = &listeners.front();
  }
  if (d.listener == nullptr) {
    d.outcome = RouteDecision::Outcome::no_listener;
    return d;
  }
  for (const auto& r : d.listener->routes) {
    if (r.match.matches(req)) {
      d.route = &r;
      d.outcome = RouteDecision::Outcome::routed;
      return d;
    }
  }
  d.outcome = RouteDecision::Outcome::no_route;
  return d;
}

}  // namespace meshd::mesh
