#pragma once
// A worker: one thread, one io_context, its own SO_REUSEPORT acceptors, upstream pool,
// load-balancer state and metric shard (DESIGN "Threading"). Connections stay on the
// worker that accepted them; the main thread talks to it only by posting.
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/intrusive/list.hpp>

#include <atomic>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <memory_resource>
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
#include "proxy/io.hpp"
#include "proxy/run_options.hpp"
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

class DownstreamConnection;

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
  std::list<DownstreamConnection*>::iterator track(DownstreamConnection* c);
  void untrack(std::list<DownstreamConnection*>::iterator it);
  std::size_t parked_connections() const { return parked_.size(); }

 private:
  // A keep-alive connection idle for DownstreamConnection::kParkAfter: no coroutine,
  // no parser, no buffer, not even an Asio socket: its descriptor waits in the
  // worker's parking epoll set (about 100 bytes of meshd memory per connection).
  // Oldest first, so the front is the next to reach the idle timeout.
  struct Parked : boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::normal_link>> {
    int fd = -1;
    std::uint16_t slot = 0;  // the listening slot (0: egress, 1 + i: ingress slot i)
    Clock::time_point idle_since;
    Clock::time_point expires;  // idle timeout
    std::string peer;
  };
  using ParkedList = boost::intrusive::list<Parked>;

  // Listening slots: 0 is egress, 1 + i the ingress slot i.
  static metrics::Direction direction_of(std::size_t slot) {
    return slot == 0 ? metrics::Direction::egress : metrics::Direction::ingress;
  }
  awaitable<void> accept_loop(tcp::acceptor& acceptor, std::size_t slot);
  awaitable<void> sweep_loop();
  // Runs a connection's coroutine (new, or back from parking).
  void serve(tcp::socket socket, std::size_t slot, std::string peer, std::optional<Clock::time_point> idle_since);
  void park(tcp::socket socket, std::size_t slot, std::string peer, Clock::time_point idle_since);
  void wait_parked();  // arms the wait on the parking epoll set
  void unpark_ready();
  void close_parked(ParkedList::iterator it);
  void free_parked(Parked* p);
  void expire_parked();
  void close_all_parked();  // drain and stop
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
  std::list<DownstreamConnection*> connections_;
  // Parked nodes come from their own pool, so that they do not pin pages among the
  // freed memory of the connections' coroutines (which malloc can then give back).
  std::pmr::unsynchronized_pool_resource parked_memory_;
  ParkedList parked_;
  int park_epoll_ = -1;
  std::unique_ptr<asio::posix::stream_descriptor> park_events_;  // park_epoll_, in the io_context
  std::unique_ptr<asio::steady_timer> parked_timer_;             // the front's idle timeout
  bool parked_timer_armed_ = false;
  // Memory given back to the system after a wave of connections ends (malloc_trim).
  std::size_t active_peak_ = 0;
  std::atomic<std::size_t> open_connections_{0};
  std::vector<std::size_t> per_listener_;  // open connections, by slot
  std::vector<tcp> family_;               // of each slot's listener
  bool draining_ = false;
  bool stopping_ = false;
};

}  // namespace meshd::proxy
