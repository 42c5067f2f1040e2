#pragma once
// Active health checks (App Mesh listener healthCheck), run on the main thread for
// every endpoint this sidecar may call: http (GET path, 200 is a pass) and tcp
// (connect). Each endpoint is checked at once when it appears, then every
// intervalMillis plus up to 10 % jitter, each probe limited to timeoutMillis.
// Results go through HealthState and land in the endpoint's `healthy` atomic.
#include <map>
#include <memory>

#include "mesh/endpoints.hpp"

namespace boost::asio {
class io_context;
}

namespace meshd::mesh {

class HealthChecker {
 public:
  explicit HealthChecker(boost::asio::io_context& ioc);
  ~HealthChecker();
  // The endpoints to check: new ones start, removed ones stop, others keep their state.
  void update(const Snapshot& snap, const EndpointTable& table);
  // Every endpoint that needs checking has had a first result (for /ready).
  bool first_round_done() const;

 private:
  struct Target;
  void schedule(const std::shared_ptr<Target>& t, std::chrono::milliseconds delay);
  void probe(const std::shared_ptr<Target>& t);

  boost::asio::io_context& ioc_;
  std::map<const Endpoint*, std::shared_ptr<Target>> targets_;
};

}  // namespace meshd::mesh
