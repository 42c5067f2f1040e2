#pragma once
// Outlier ejection (App Mesh listener outlierDetection), decided on the main thread.
// Workers only count: an endpoint's `consecutive_5xx` grows on each 5xx or connect
// failure and is reset by any other answer; a worker that sees it reach
// maxServerErrors asks for a sweep (notify()). A sweep, also run every `interval`,
// ejects such endpoints for min(base × n, max(base, 300 s)) at their n-th ejection,
// never more than maxEjectionPercent of a node's endpoints (at least one), and lets
// endpoints whose time is up return.
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <vector>

#include "mesh/cluster/endpoints.hpp"


namespace meshd::mesh {

class OutlierDetector {
 public:
  explicit OutlierDetector(boost::asio::io_context& ioc);
  ~OutlierDetector();
  void update(std::shared_ptr<const Snapshot> snap, std::shared_ptr<const EndpointTable> table);
  // One sweep at `now` (tests pass their own clock); returns the ejections it made.
  std::size_t sweep(std::chrono::steady_clock::time_point now);
  // From any thread: sweep soon.
  void notify();

 private:
  void arm();
  boost::asio::io_context& ioc_;
  std::unique_ptr<boost::asio::steady_timer> timer_;
  std::shared_ptr<const Snapshot> snap_;
  std::shared_ptr<const EndpointTable> table_;
  std::chrono::milliseconds period_{1000};
  bool active_ = false;
};

}  // namespace meshd::mesh
