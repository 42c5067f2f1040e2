#pragma once
// A worker: one thread, one io_context, its own SO_REUSEPORT acceptors, upstream pool,
// load-balancer state and metric shard (DESIGN "Threading"). Connections stay on the
// worker that accepted them; the main thread talks to it only by posting.
#include <atomic>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "mesh/endpoints.hpp"
#include "mesh/resilience.hpp"
#include "mesh/snapshot.hpp"
#include "metrics/stats.hpp"
#include "proxy/io.hpp"
#include "proxy/run_options.hpp"
#include "proxy/upstream.hpp"

namespace meshd::proxy {

class AccessLog;

// The local app's connection-pool limit (listener connectionPool.http), shared by all
// workers: requests to the app in flight, and requests waiting for a slot.
struct AppPoolLimit {
  std::uint32_t max_connections = 0;
  std::uint32_t max_pending = 0;
  std::atomic<std::uint32_t> active{0};
  std::atomic<std::uint32_t> pending{0};
};

// What a worker routes with; replaced as a whole (a new snapshot or new endpoints).
// Each request keeps the view it started with.
struct RuntimeView {
  std::shared_ptr<const mesh::Snapshot> snap;
  std::shared_ptr<const mesh::EndpointTable> endpoints;
  std::shared_ptr<mesh::Endpoint> app;  // the local app, for ingress
  mesh::RouteTimeouts ingress_timeouts;  // the node's listener timeouts
  const std::string* node_label = nullptr;
  std::shared_ptr<AccessLog> access_log;  // null: no access log
  std::shared_ptr<AppPoolLimit> app_limit;        // null: no connection-pool limit
  std::shared_ptr<mesh::TokenBucket> rate_limit;  // null: no rate limit
  std::function<void()> outlier_notify;           // asks the main thread for an ejection sweep
};

class DownstreamConnection;

class Worker {
 public:
  Worker(unsigned index, const Limits& limits);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Adopts the listening descriptors and runs the thread.
  void start(int egress_fd, int ingress_fd);
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
  std::list<DownstreamConnection*>::iterator track(DownstreamConnection* c);
  void untrack(std::list<DownstreamConnection*>::iterator it);

 private:
  awaitable<void> accept_loop(tcp::acceptor& acceptor, metrics::Direction direction);
  awaitable<void> sweep_loop();

  unsigned index_;
  Limits limits_;
  // Destroyed first, explicitly (~Worker): pending coroutine frames refer to the
  // members below.
  std::unique_ptr<asio::io_context> ioc_;
  std::unique_ptr<tcp::acceptor> egress_;
  std::unique_ptr<tcp::acceptor> ingress_;
  std::thread thread_;
  std::shared_ptr<const RuntimeView> view_;
  UpstreamPool pool_;
  metrics::Shard stats_;
  std::mt19937_64 rng_;
  std::vector<std::uint32_t> round_robin_;
  std::list<DownstreamConnection*> connections_;
  std::atomic<std::size_t> open_connections_{0};
  std::array<std::size_t, 2> per_listener_{};
  bool draining_ = false;
  bool stopping_ = false;
};

}  // namespace meshd::proxy
