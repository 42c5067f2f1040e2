#pragma once
// The cluster side of the sidecar (DESIGN "The way a request travels"): the endpoint
// registry of every node this sidecar may call, their discovery (static, DNS and
// Cloud Map names through c-ares, refreshed every dns_refresh), active health checks
// and outlier detection. Main thread; the workers see its endpoint table through
// the RuntimeView the server publishes.
#include <functional>
#include <memory>
#include <string>

#include "mesh/cluster/endpoints.hpp"
#include "mesh/cluster/outlier_detector.hpp"
#include "mesh/compiled/snapshot.hpp"
#include "net/dns.hpp"
#include "proxy/health_checker.hpp"
#include "proxy/io.hpp"
#include "proxy/run_options.hpp"

namespace meshd::proxy {

class ClusterManager {
 public:
  ClusterManager(asio::io_context& main, const Limits& limits);
  ~ClusterManager();
  // The DNS resolver; an error, or empty.
  std::string start();
  // The clusters of a new snapshot; endpoints that remain keep their state.
  void set_snapshot(const std::shared_ptr<const mesh::Snapshot>& snap);
  // The endpoint table, with health checks and outlier detection following it (call
  // before the workers see it).
  std::shared_ptr<const mesh::EndpointTable> table();
  // The registry's table as it is (to tell whether it changed).
  std::shared_ptr<const mesh::EndpointTable> current() const { return registry_.table(); }
  // Resolves every name now; `answered` runs when the answers are in.
  void refresh(std::function<void()> answered);
  // Resolves every dns_refresh; `answered` runs after each round.
  void discover(std::function<void()> answered);
  // Every node's first discovery answer and every checked endpoint's first check.
  bool first_round_done() const;
  // For the workers: asks for an ejection sweep (any thread).
  std::function<void()> outlier_notifier();

 private:
  asio::io_context& main_;
  const Limits& limits_;
  std::shared_ptr<const mesh::Snapshot> snap_;
  mesh::EndpointRegistry registry_;
  std::unique_ptr<net::CaresResolver> resolver_;
  HealthChecker health_;
  mesh::OutlierDetector outlier_;
};

}  // namespace meshd::proxy
