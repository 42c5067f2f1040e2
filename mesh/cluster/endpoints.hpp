#pragma once
// Endpoints of the clusters a sidecar may call, and their discovery (DESIGN
// "Threading"). The registry lives on the main thread and outlives snapshots: an
// endpoint keeps its state (health, ejection, counters) across DNS answers and
// reloads, keyed by (node, IP:port). Workers get immutable EndpointTables (posted by
// the main thread) and touch endpoints only through their atomics.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mesh/compiled/snapshot.hpp"
#include "net/address.hpp"
#include "net/dns.hpp"

namespace meshd::mesh {

struct Endpoint {
  net::IpAddress ip;
  std::uint16_t port = 0;
  std::string text;  // "IP:PORT", the metrics and /clusters label
  std::atomic<std::uint32_t> active_requests{0};
  std::atomic<std::uint32_t> connections{0};
  // Written by the main thread (health checks, outlier ejection), read by workers.
  std::atomic<bool> healthy{true};
  std::atomic<bool> ejected{false};
  // Reported by workers, read by the main thread: 5xx and connect failures in a row.
  std::atomic<std::uint32_t> consecutive_5xx{0};
  // Main thread only.
  std::uint32_t ejections = 0;
  std::chrono::steady_clock::time_point ejected_until{};
};

// Counters of one virtual node across all workers: the retry budget and the
// outlier metrics read them.
struct NodeState {
  std::atomic<std::uint32_t> active_requests{0};
  std::atomic<std::uint32_t> retries_in_flight{0};
  std::atomic<std::uint64_t> ejections_total{0};
};

struct ClusterEndpoints {
  std::string node;
  std::int32_t port = 0;
  std::shared_ptr<NodeState> node_state;
  std::vector<std::shared_ptr<Endpoint>> endpoints;
  std::vector<std::pair<std::uint64_t, std::uint32_t>> ring;  // RING_HASH nodes only
  bool answered = false;  // the first discovery answered (for /ready)
  std::string last_error;  // the last discovery failure, for /clusters and logs
};

// Indexed like Snapshot::clusters().
using EndpointTable = std::vector<std::shared_ptr<const ClusterEndpoints>>;

// Discovery for one snapshot: static endpoints at once, DNS and Cloud Map names
// through the resolver. Keeps the last answer on failures (SERVFAIL, timeout) but not
// on NXDOMAIN, which empties the cluster.
class EndpointRegistry {
 public:
  // Sets the clusters to discover (a new snapshot); endpoints that remain keep their state.
  void set_snapshot(std::shared_ptr<const Snapshot> snap);
  // One round of DNS resolution for every DNS cluster; `done` runs when all answered.
  void refresh(net::Resolver& resolver, std::function<void()> done);
  std::shared_ptr<const EndpointTable> table() const { return table_; }
  bool all_answered() const;

 private:
  // An endpoint (the same object while the registry knows it); a new one starts
  // unhealthy when its listener has a health check (used after its first pass).
  std::shared_ptr<Endpoint> endpoint(const std::string& node, const net::IpAddress& ip, std::uint16_t port,
                                     bool health_checked);
  void publish();

  std::shared_ptr<const Snapshot> snap_;
  std::vector<ClusterEndpoints> clusters_;  // the working copy, indexed like the snapshot
  std::map<std::string, std::weak_ptr<Endpoint>> known_;  // node + '\0' + IP:port
  std::map<std::string, std::shared_ptr<NodeState>> nodes_;
  std::shared_ptr<const EndpointTable> table_ = std::make_shared<EndpointTable>();
};

// The DNS name a cluster resolves, or empty for static discovery.
std::string discovery_name(const Cluster& c);
// The node listener a cluster's targets aim at (its health check and outlier
// detection apply), or null.
const Listener* cluster_listener(const Cluster& c);

}  // namespace meshd::mesh
