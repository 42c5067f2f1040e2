#pragma once
// The admin endpoints of SPEC §4 (/ready, /server_info, /metrics, /config_dump,
// /clusters, POST /reload, POST /drain), answered on the admin server's thread from
// what the main thread publishes. The server is reached only through AdminHost.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "metrics/admin_server.hpp"
#include "metrics/stats.hpp"
#include "proxy/run_options.hpp"

namespace meshd::proxy {

struct RuntimeView;

// What the admin thread shows of the loaded configuration (it never touches the main
// thread's fields).
struct PublishedState {
  std::string mesh;
  std::int64_t version = 0;
  std::string sha256, loaded_at, last_error, last_error_at;
};

struct ReloadResult {
  bool ok = false;
  bool changed = false;
  std::string message;
};

// The server as the admin endpoints see it (any thread).
class AdminHost {
 public:
  virtual ~AdminHost() = default;
  virtual const RunOptions& options() const = 0;
  virtual std::chrono::steady_clock::time_point started() const = 0;
  virtual std::shared_ptr<const PublishedState> state() const = 0;
  virtual std::shared_ptr<const RuntimeView> view() const = 0;
  virtual bool draining() const = 0;
  virtual bool ready() const = 0;
  virtual std::uint64_t reloads(bool success) const = 0;
  virtual std::size_t worker_count() const = 0;
  virtual const std::vector<std::string>& listeners() const = 0;  // "NAME ADDRESS"
  virtual std::string ingress_address(std::size_t slot) const = 0;
  virtual metrics::Shard scrape_workers() = 0;  // every worker's counters, merged
  virtual ReloadResult reload_now() = 0;        // on the main thread; waits for it
  virtual void drain_now() = 0;                 // returns once the drain has started
};

class AdminEndpoints {
 public:
  explicit AdminEndpoints(AdminHost& host) : host_(host) {}
  metrics::AdminResponse handle(const std::string& method, const std::string& target, bool stats_only);

 private:
  std::string server_info();
  std::string clusters();
  std::string config_dump();
  std::string metrics_text();

  AdminHost& host_;
};

}  // namespace meshd::proxy
