#pragma once
// A worker: one thread, one io_context, its own SO_REUSEPORT acceptors, upstream pool,
// load-balancer state and metric shard (DESIGN "Threading"). Connections stay on the
// worker that accepted them; the main thread talks to it only by posting.
#include <atomic>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mesh/cluster/endpoints.hpp"
#include "mesh/cluster/resilience.hpp"
#include "mesh/compiled/snapshot.hpp"
#include "metrics/stats.hpp"
#include "proxy/app_limit.hpp"
#include "proxy/http1_parking.hpp"
#include "proxy/io.hpp"
#include "proxy/run_options.hpp"
#include "proxy/served_connection.hpp"
#include "proxy/upstream.hpp"

namespace meshd::proxy {

class AccessLog;

// One of the node's listeners as its ingress port serves it: the app behind it and
// the listener's own settings (SPEC §3: they apply here).
struct IngressView {
  std::uint16_t listener_port = 0;       // the node listener's port; 0: none (removed by a reload)
  std::shared_ptr<mesh::Endpoint> app;   // the local app; null: no app port
  mesh::RouteTimeouts timeouts;          // the listener's timeouts
  std::shared_ptr<AppPoolLimit> app_limit;        // null: no connection-pool limit
  std::shared_ptr<mesh::TokenBucket> rate_limit;  // null: no rate limit
  UpstreamProtocol app_protocol = UpstreamProtocol::http1;  // the listener's protocol (SPEC §7)
};

// What a worker routes with; replaced as a whole (a new snapshot or new endpoints).
// Each request keeps the view it started with.
struct RuntimeView {
  std::shared_ptr<const mesh::Snapshot> snap;
  std::shared_ptr<const mesh::EndpointTable> endpoints;
  // By ingress listening slot (Worker::start's order): the first is --ingress-port.
  std::vector<IngressView> ingress;
  const std::string* node_label = nullptr;
  std::shared_ptr<AccessLog> access_log;  // null: no access log
  std::function<void()> outlier_notify;   // asks the main thread for an ejection sweep
};

class Worker {
 public:
  Worker(unsigned index, const Limits& limits);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Adopts the listening descriptors (egress, then one per ingress slot) and runs
  // the thread.
  void start(int egress_fd, const std::vector<int>& ingress_fds);
  void set_view(std::shared_ptr<const RuntimeView> view);  // any thread
  void begin_drain();                                      // any thread
  void stop();                                             // any thread; joins
  std::future<metrics::Shard> scrape();                    // any thread
  std::size_t open_connections() const { return open_connections_.load(std::memory_order_relaxed); }

  // For the connections of this worker (its thread only).
  asio::io_context& ioc() { return *ioc_; }
  const std::shared_ptr<const RuntimeView>& view() const { return view_; }
  const Limits& limits() const { return limits_; }
  UpstreamPool& pool() { return pool_; }
  metrics::Shard& stats() { return stats_; }
  std::mt19937_64& rng() { return rng_; }
  std::uint32_t next_round_robin(std::size_t cluster);
  bool draining() const { return draining_; }
  std::list<ServedConnection*>::iterator track(ServedConnection* c);
  void untrack(std::list<ServedConnection*>::iterator it);
  std::size_t parked_connections() const { return parking_ ? parking_->size() : 0; }

 private:
  // Listening slots: 0 is egress, 1 + i the ingress slot i.
  static metrics::Direction direction_of(std::size_t slot) {
    return slot == 0 ? metrics::Direction::egress : metrics::Direction::ingress;
  }
  awaitable<void> accept_loop(tcp::acceptor& acceptor, std::size_t slot);
  awaitable<void> sweep_loop();
  // Runs a connection's coroutine (new, or back from parking).
  void serve(tcp::socket socket, std::size_t slot, std::string peer, std::optional<Clock::time_point> idle_since);
  void maybe_trim();
  static constexpr std::size_t kTrimAfterDrop = 256;
  void connection_closed(std::size_t slot);

  unsigned index_;
  Limits limits_;
  // Destroyed first, explicitly (~Worker): pending coroutine frames refer to the
  // members below.
  std::unique_ptr<asio::io_context> ioc_;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;  // by slot
  std::thread thread_;
  std::shared_ptr<const RuntimeView> view_;
  UpstreamPool pool_;
  metrics::Shard stats_;
  std::mt19937_64 rng_;
  std::vector<std::uint32_t> round_robin_;
  std::list<ServedConnection*> connections_;
  // Idle HTTP/1.1 connections (the HTTP/1.1 adapter's parking); before ioc_ dies.
  std::unique_ptr<Http1Parking> parking_;
  // Memory given back to the system after a wave of connections ends (malloc_trim).
  std::size_t active_peak_ = 0;
  std::atomic<std::size_t> open_connections_{0};
  std::vector<std::size_t> per_listener_;  // open connections, by slot
  std::vector<tcp> family_;               // of each slot's listener
  bool draining_ = false;
  bool stopping_ = false;
};

}  // namespace meshd::proxy
