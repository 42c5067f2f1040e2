#include "proxy/cluster_manager.hpp"

namespace meshd::proxy {

ClusterManager::ClusterManager(asio::io_context& main, const Limits& limits)
    : main_(main), limits_(limits), health_(main), outlier_(main) {}

ClusterManager::~ClusterManager() = default;

std::string ClusterManager::start() {
  std::string error;
  resolver_ = std::make_unique<net::CaresResolver>(main_, limits_.dns_resolvers, error);
  return error;
}

void ClusterManager::set_snapshot(const std::shared_ptr<const mesh::Snapshot>& snap) {
  snap_ = snap;
  registry_.set_snapshot(snap);
}

std::shared_ptr<const mesh::EndpointTable> ClusterManager::table() {
  auto table = registry_.table();
  health_.update(*snap_, *table);
  outlier_.update(snap_, table);
  return table;
}

void ClusterManager::refresh(std::function<void()> answered) { registry_.refresh(*resolver_, std::move(answered)); }

void ClusterManager::discover(std::function<void()> answered) {
  registry_.refresh(*resolver_, [this, answered] {
    answered();
    auto timer = std::make_shared<asio::steady_timer>(main_, limits_.dns_refresh);
    timer->async_wait([this, timer, answered](const error_code& ec) {
      if (!ec) discover(answered);
    });
  });
}

bool ClusterManager::first_round_done() const { return registry_.all_answered() && health_.first_round_done(); }

std::function<void()> ClusterManager::outlier_notifier() {
  return [this] { outlier_.notify(); };
}

}  // namespace meshd::proxy
