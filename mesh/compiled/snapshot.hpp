#pragma once
// A validated mesh compiled for one virtual node: everything the data path asks per
// request, immutable once built and shared by every worker (each request keeps the
// snapshot it started with). Egress: backend virtual service -> router listener ->
// ordered routes -> weighted targets -> clusters. Ingress: the node's own listeners.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mesh/compiled/request_view.hpp"
#include "mesh/compiled/route_matcher.hpp"
#include "mesh/config/diagnostics.hpp"
#include "mesh/config/model.hpp"

namespace meshd::mesh {

// The retry policy a route runs with, App Mesh's defaults applied (SPEC §1).
struct RetryPolicySpec {
  std::uint32_t max_retries = 2;
  std::chrono::milliseconds per_try_timeout{0};  // 0: only the request timeout
  std::uint32_t status_5xx = 0;  // bit i: retry on status 500 + i
  bool on_409 = false;           // client-error
  bool on_reset = true;          // upstream reset / closed before a full response
  bool on_connect_failure = true;
  bool on_refused_stream = true;
  std::uint8_t grpc_codes = 0;   // bit per GrpcRetryEvent
  std::chrono::milliseconds backoff_base{25};
  std::chrono::milliseconds backoff_max{250};
  std::uint32_t budget_percent = 20;
  std::uint32_t budget_min_concurrent = 3;
  bool is_default = true;  // App Mesh's hidden default (no retryPolicy in the file)

  // Whether a gRPC status code (1 CANCELLED, 4 DEADLINE_EXCEEDED, 8 RESOURCE_EXHAUSTED,
  // 13 INTERNAL, 14 UNAVAILABLE) is among the grpcRetryEvents.
  bool retries_grpc(int code) const {
    int bit = -1;
    switch (code) {
      case 1: bit = static_cast<int>(GrpcRetryEvent::cancelled); break;
      case 4: bit = static_cast<int>(GrpcRetryEvent::deadline_exceeded); break;
      case 8: bit = static_cast<int>(GrpcRetryEvent::resource_exhausted); break;
      case 13: bit = static_cast<int>(GrpcRetryEvent::internal); break;
      case 14: bit = static_cast<int>(GrpcRetryEvent::unavailable); break;
      default: return false;
    }
    return ((grpc_codes >> bit) & 1u) != 0;
  }
  bool retries_status(int status) const {
    if (status == 409) return on_409;
    return status >= 500 && status < 532 && ((status_5xx >> (status - 500)) & 1u) != 0;
  }
  static RetryPolicySpec app_mesh_default();
  static RetryPolicySpec from(const RetryPolicy& p);
};

struct RouteTimeouts {
  std::chrono::milliseconds per_request{15000};  // 0 disables
  std::chrono::milliseconds idle{300000};
};

// A virtual node as an upstream on one of its listener ports.
struct Cluster {
  std::string node_name;
  const std::string* label = nullptr;  // interned node name, for metrics
  std::int32_t port = 0;  // the node's listener port the targets aim at
  Protocol protocol = Protocol::http;
  const VirtualNode* node = nullptr;  // into the snapshot's config
  std::string describe_discovery() const;  // "static 127.0.0.2:8080, ..." or "dns NAME (ENDPOINTS)"
};

struct Target {
  std::uint32_t cluster = 0;  // index into Snapshot::clusters()
  std::uint32_t weight = 0;
};

struct CompiledRoute {
  std::string name;  // "" for the implicit route of a virtual-node provider
  const std::string* label = nullptr;  // interned name, for metrics
  Protocol kind = Protocol::http;
  std::optional<std::int32_t> priority;
  RouteMatcher match;
  std::vector<Target> targets;
  std::uint32_t total_weight = 0;
  RetryPolicySpec retry;
  RouteTimeouts timeouts;

  // A target drawn in proportion to its weight; `draw` is uniform in [0, total_weight).
  const Target& pick(std::uint32_t draw) const;
};

struct RouterListener {
  std::int32_t port = 0;
  Protocol protocol = Protocol::http;
  std::vector<CompiledRoute> routes;  // in the order they are tried
};

struct ServiceEntry {
  std::string name;  // lower-cased, as authorities are matched
  const std::string* label = nullptr;  // interned service name (as written), for metrics
  const VirtualService* service = nullptr;
  enum class Provider { none, virtual_node, virtual_router } provider = Provider::none;
  std::string provider_name;
  // The provider's listeners with their routes (a virtual-node provider gets one per
  // node listener, with one implicit route). Shared by services with the same router.
  const std::vector<RouterListener>* listeners = nullptr;
};

struct RouteDecision {
  enum class Outcome {
    routed,          // service, listener and route are set
    outside_mesh,    // not a backend: ALLOW_ALL forwards it, DROP_ALL answers 403
    no_route,        // 404: no route matched
    no_listener,     // 404: no router listener for the port (or several and none given)
    no_provider,     // 503: the virtual service has no provider
  } outcome = Outcome::outside_mesh;
  const ServiceEntry* service = nullptr;
  const RouterListener* listener = nullptr;
  const CompiledRoute* route = nullptr;
};

class Snapshot {
 public:
  // Compiles `config` (already validated) for `node_name`; nullptr with a diagnostic
  // when the node does not exist.
  static std::shared_ptr<const Snapshot> compile(std::shared_ptr<const MeshConfig> config,
                                                 const std::string& node_name, Diagnostics& diag,
                                                 const std::string& file = "");

  // Egress routing of one request. `port` is the authority's port, or the original
  // destination port under interception.
  RouteDecision route(std::string_view host, std::optional<std::uint16_t> port,
                      const RequestView& req) const;

  const MeshConfig& config() const { return *config_; }
  const VirtualNode& node() const { return *node_; }
  EgressFilterType egress_filter() const { return egress_filter_; }
  const std::vector<Cluster>& clusters() const { return clusters_; }
  const std::vector<ServiceEntry>& services() const { return services_; }
  const ServiceEntry* find_service(std::string_view lower_host) const;
  std::size_t route_count() const { return route_count_; }

 private:
  std::shared_ptr<const MeshConfig> config_;
  const VirtualNode* node_ = nullptr;
  EgressFilterType egress_filter_ = EgressFilterType::DROP_ALL;
  std::vector<ServiceEntry> services_;
  std::unordered_map<std::string_view, std::uint32_t> service_index_;
  std::vector<Cluster> clusters_;
  std::vector<std::vector<RouterListener>> routers_;  // compiled once per router / node provider
  std::size_t route_count_ = 0;
};

}  // namespace meshd::mesh
