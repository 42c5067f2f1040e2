#pragma once
// Turns merged shards and the main thread's state into Prometheus metric families
// (a prometheus-cpp Collectable) and the text exposition format.
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "metrics/stats.hpp"

namespace meshd::metrics {

struct EndpointState {
  std::string node;
  std::string endpoint;  // IP:PORT
  bool healthy = true;
  bool ejected = false;
};

struct OutlierState {
  std::string node;
  std::uint64_t ejections_total = 0;
  std::uint64_t ejected = 0;
};

// Everything a scrape shows; filled by the server at scrape time.
struct Snapshot {
  Shard merged;
  std::vector<EndpointState> endpoints;
  std::vector<OutlierState> outliers;
  std::map<std::string, std::uint64_t> config_reloads;  // result -> count
  std::string version, mesh, node;
};

class Collector : public prometheus::Collectable {
 public:
  explicit Collector(std::function<Snapshot()> gather) : gather_(std::move(gather)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::function<Snapshot()> gather_;
};

std::string to_text(const std::vector<prometheus::MetricFamily>& families);

}  // namespace meshd::metrics
