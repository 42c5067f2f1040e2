#include "mesh/cluster/endpoints.hpp"

#include <netinet/in.h>

#include <algorithm>

#include "mesh/cluster/resilience.hpp"
#include "net/log.hpp"

namespace meshd::mesh {

std::string discovery_name(const Cluster& c) {
  if (c.node == nullptr || !c.node->spec.service_discovery) return {};
  const auto& sd = *c.node->spec.service_discovery;
  if (const auto* dns = std::get_if<DnsDiscovery>(&sd)) return dns->hostname;
  if (const auto* cm = std::get_if<CloudMapDiscovery>(&sd)) return cm->service_name + "." + cm->namespace_name;
  return {};
}

const Listener* cluster_listener(const Cluster& c) {
  if (c.node == nullptr) return nullptr;
  for (const auto& l : c.node->spec.listeners) {
    if (l.port_mapping.port == c.port) return &l;
  }
  return nullptr;
}

namespace {

bool health_checked(const Cluster& c) {
  const Listener* l = cluster_listener(c);
  return l != nullptr && l->health_check.has_value();
}

std::optional<IpPreference> preference(const Cluster& c, const MeshConfig& cfg) {
  const auto& sd = *c.node->spec.service_discovery;
  if (const auto* dns = std::get_if<DnsDiscovery>(&sd); dns && dns->ip_preference) return dns->ip_preference;
  if (const auto* cm = std::get_if<CloudMapDiscovery>(&sd); cm && cm->ip_preference) return cm->ip_preference;
  return cfg.mesh.spec.ip_preference;
}

int family_of(std::optional<IpPreference> p) {
  if (p == IpPreference::IPv4_ONLY) return AF_INET;
  if (p == IpPreference::IPv6_ONLY) return AF_INET6;
  return AF_UNSPEC;
}

bool load_balancer_only(const Cluster& c) {
  const auto* dns = std::get_if<DnsDiscovery>(&*c.node->spec.service_discovery);
  return dns != nullptr && dns->response_type.value_or(DnsResponseType::LOADBALANCER) == DnsResponseType::LOADBALANCER;
}

}  // namespace

std::shared_ptr<Endpoint> EndpointRegistry::endpoint(const std::string& node, const net::IpAddress& ip,
                                                     std::uint16_t port, bool checked) {
  const std::string text = net::endpoint_text(ip, port);
  const std::string key = node + '\0' + text;
  if (auto it = known_.find(key); it != known_.end()) {
    if (auto e = it->second.lock()) return e;
  }
  auto e = std::make_shared<Endpoint>();
  e->healthy = !checked;
  e->ip = ip;
  e->port = port;
  e->text = text;
  known_[key] = e;
  return e;
}

void EndpointRegistry::set_snapshot(std::shared_ptr<const Snapshot> snap) {
  std::vector<ClusterEndpoints> next(snap->clusters().size());
  for (std::size_t i = 0; i < next.size(); ++i) {
    const Cluster& c = snap->clusters()[i];
    ClusterEndpoints& ce = next[i];
    ce.node = c.node_name;
    ce.port = c.port;
    auto& state = nodes_[c.node_name];
    if (!state) state = std::make_shared<NodeState>();
    ce.node_state = state;
    // What a previous snapshot discovered for the same node and port stays.
    for (const auto& old : clusters_) {
      if (old.node == ce.node && old.port == ce.port) {
        ce.endpoints = old.endpoints;
        ce.answered = old.answered;
      }
    }
    if (c.node == nullptr || !c.node->spec.service_discovery) {
      ce.answered = true;
      continue;
    }
    if (const auto* st = std::get_if<StaticDiscovery>(&*c.node->spec.service_discovery)) {
      ce.endpoints.clear();
      for (const auto& ep : st->endpoints) {
        if (auto ip = net::parse_ip(ep.address)) {
          ce.endpoints.push_back(endpoint(c.node_name, *ip, static_cast<std::uint16_t>(ep.port.value_or(c.port)),
                                          health_checked(c)));
        }
      }
      ce.answered = true;
    }
  }
  clusters_ = std::move(next);
  snap_ = std::move(snap);
  // Forget endpoints nobody holds any more.
  for (auto it = known_.begin(); it != known_.end();) {
    it = it->second.expired() ? known_.erase(it) : std::next(it);
  }
  publish();
}

void EndpointRegistry::refresh(net::Resolver& resolver, std::function<void()> done) {
  if (!snap_) {
    done();
    return;
  }
  // name -> family; one query per (name, family).
  std::map<std::pair<std::string, int>, std::vector<std::size_t>> queries;
  for (std::size_t i = 0; i < clusters_.size(); ++i) {
    const Cluster& c = snap_->clusters()[i];
    const std::string name = discovery_name(c);
    if (name.empty()) continue;
    queries[{name, family_of(preference(c, snap_->config()))}].push_back(i);
  }
  if (queries.empty()) {
    done();
    return;
  }
  auto remaining = std::make_shared<std::size_t>(queries.size());
  auto snap = snap_;
  for (const auto& [key, indices] : queries) {
    const auto family = key.second;
    resolver.resolve({key.first}, family,
                     [this, indices = indices, snap, remaining, done](const std::string& name,
                                                                     net::DnsAnswer answer) {
      if (snap == snap_) {  // answers for a replaced snapshot are dropped
        for (std::size_t i : indices) {
          const Cluster& c = snap_->clusters()[i];
          ClusterEndpoints& ce = clusters_[i];
          if (answer.status == net::DnsAnswer::Status::ok) {
            auto addrs = answer.addresses;
            // Preference order: IPv4 first when preferred, else IPv6 first (Envoy's default).
            const auto pref = preference(c, snap_->config());
            const bool v4_first = pref == IpPreference::IPv4_PREFERRED || pref == IpPreference::IPv4_ONLY;
            std::stable_sort(addrs.begin(), addrs.end(), [&](const net::IpAddress& a, const net::IpAddress& b) {
              return v4_first ? (!a.v6 && b.v6) : (a.v6 && !b.v6);
            });
            if (load_balancer_only(c) && addrs.size() > 1) addrs.resize(1);
            const bool debug = log::enabled(log::Level::debug);
            std::string before, after;  // for the debug line
            if (debug) {
              for (const auto& e : ce.endpoints) before += " " + e->text;
            }
            ce.endpoints.clear();
            for (const auto& ip : addrs) {
              ce.endpoints.push_back(endpoint(ce.node, ip, static_cast<std::uint16_t>(ce.port), health_checked(c)));
              if (debug) after += " " + ce.endpoints.back()->text;
            }
            if (!ce.last_error.empty()) {
              log::write(log::Level::info, "discovery: node " + ce.node + ": " + name + " answers again");
            }
            if (debug && (!ce.answered || before != after)) {
              log::write(log::Level::debug, "discovery: node " + ce.node + ": " + name + " ->" +
                                                (after.empty() ? std::string(" no address") : after));
            }
            ce.answered = true;
            ce.last_error.clear();
          } else {
            std::string error = name + ": " + answer.error;
            if (answer.status == net::DnsAnswer::Status::nxdomain) {
              ce.endpoints.clear();  // the name is gone: so are its endpoints
              ce.answered = true;
            } else {
              error += " (keeping the last answer)";
            }
            if (error != ce.last_error) log::write(log::Level::warning, "discovery: node " + ce.node + ": " + error);
            ce.last_error = std::move(error);
          }
        }
      }
      if (--*remaining == 0) {
        if (snap == snap_) publish();
        done();
      }
    });
  }
}

bool EndpointRegistry::all_answered() const {
  return std::all_of(clusters_.begin(), clusters_.end(), [](const ClusterEndpoints& c) { return c.answered; });
}

void EndpointRegistry::publish() {
  auto table = std::make_shared<EndpointTable>();
  table->reserve(clusters_.size());
  for (std::size_t i = 0; i < clusters_.size(); ++i) {
    auto& c = clusters_[i];
    const auto& lb = snap_->clusters()[i].node->spec.load_balancing;
    if (lb && lb->policy == LbPolicy::RING_HASH) c.ring = build_ring(c.endpoints);
    table->push_back(std::make_shared<const ClusterEndpoints>(c));
  }
  table_ = std::move(table);
}

}  // namespace meshd::mesh
