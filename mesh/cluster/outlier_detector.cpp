#include "mesh/cluster/outlier_detector.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "mesh/cluster/resilience.hpp"
#include "net/log.hpp"

namespace meshd::mesh {

OutlierDetector::OutlierDetector(boost::asio::io_context& ioc)
    : ioc_(ioc), timer_(std::make_unique<boost::asio::steady_timer>(ioc)) {}

OutlierDetector::~OutlierDetector() { timer_->cancel(); }

void OutlierDetector::update(std::shared_ptr<const Snapshot> snap, std::shared_ptr<const EndpointTable> table) {
  snap_ = std::move(snap);
  table_ = std::move(table);
  period_ = std::chrono::milliseconds(1000);
  bool any = false;
  for (const auto& c : snap_->clusters()) {
    const Listener* l = cluster_listener(c);
    if (l == nullptr || !l->outlier_detection) continue;
    any = true;
    const auto interval = l->outlier_detection->interval.millis();
    if (interval.count() > 0 && interval < period_) period_ = interval;
  }
  if (any && !active_) {
    active_ = true;
    arm();
  }
}

void OutlierDetector::arm() {
  timer_->expires_after(period_);
  timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    sweep(std::chrono::steady_clock::now());
    arm();
  });
}

void OutlierDetector::notify() {
  boost::asio::post(ioc_, [this] { sweep(std::chrono::steady_clock::now()); });
}

std::size_t OutlierDetector::sweep(std::chrono::steady_clock::time_point now) {
  if (!snap_ || !table_) return 0;
  std::size_t made = 0;
  for (std::size_t i = 0; i < table_->size() && i < snap_->clusters().size(); ++i) {
    const Listener* l = cluster_listener(snap_->clusters()[i]);
    if (l == nullptr || !l->outlier_detection) continue;
    const auto& od = *l->outlier_detection;
    const auto& ce = *(*table_)[i];
    std::size_t ejected = 0;
    for (const auto& e : ce.endpoints) {
      if (!e->ejected.load(std::memory_order_relaxed)) continue;
      if (now >= e->ejected_until) {
        e->consecutive_5xx.store(0, std::memory_order_relaxed);
        e->ejected.store(false, std::memory_order_relaxed);  // its time is up: back in
        log::write(log::Level::info, "outlier detection: node " + ce.node + " endpoint " + e->text + " is back");
      } else {
        ++ejected;
      }
    }
    const std::size_t limit = max_ejected(ce.endpoints.size(), od.max_ejection_percent);
    for (const auto& e : ce.endpoints) {
      if (ejected >= limit) break;
      if (e->ejected.load(std::memory_order_relaxed)) continue;
      if (e->consecutive_5xx.load(std::memory_order_relaxed) < static_cast<std::uint64_t>(od.max_server_errors)) continue;
      ++e->ejections;
      const auto duration = ejection_duration(od.base_ejection_duration.millis(), e->ejections);
      e->ejected_until = now + duration;
      e->ejected.store(true, std::memory_order_relaxed);  // before the log line: workers see it at once
      const auto errors = e->consecutive_5xx.exchange(0, std::memory_order_relaxed);
      ce.node_state->ejections_total.fetch_add(1, std::memory_order_relaxed);
      log::write(log::Level::info, "outlier detection: node " + ce.node + " endpoint " + e->text + " ejected for " +
                                       std::to_string(duration.count()) + " ms after " + std::to_string(errors) +
                                       " server errors in a row (ejection " + std::to_string(e->ejections) + ")");
      ++ejected;
      ++made;
    }
  }
  return made;
}

}  // namespace meshd::mesh
