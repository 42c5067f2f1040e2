#include "metrics/collector.hpp"

#include <prometheus/text_serializer.h>

#include <limits>
#include <sstream>

namespace meshd::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

const char* direction_name(Direction d) { return d == Direction::ingress ? "ingress" : "egress"; }

MetricFamily family(const char* name, const char* help, MetricType type) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

ClientMetric metric(std::vector<ClientMetric::Label> labels) {
  ClientMetric m;
  m.label = std::move(labels);
  return m;
}

}  // namespace

std::vector<MetricFamily> Collector::Collect() const {
  const Snapshot s = gather_();
  std::vector<MetricFamily> out;

  auto requests = family("meshd_requests_total", "Requests answered downstream, by the status sent.", MetricType::Counter);
  for (const auto& [k, v] : s.merged.requests) {
    auto m = metric({{"direction", direction_name(k.direction)},
                     {"virtual_service", *k.service},
                     {"route", *k.route},
                     {"target_virtual_node", *k.node},
                     {"code", std::to_string(k.code)}});
    m.counter.value = static_cast<double>(v);
    requests.metric.push_back(std::move(m));
  }
  out.push_back(std::move(requests));

  auto grpc = family("meshd_grpc_responses_total", "gRPC responses answered downstream, by their grpc-status.",
                     MetricType::Counter);
  for (const auto& [k, v] : s.merged.grpc_responses) {
    auto m = metric({{"direction", direction_name(k.direction)},
                     {"virtual_service", *k.service},
                     {"route", *k.route},
                     {"target_virtual_node", *k.node},
                     {"grpc_status", std::to_string(k.code)}});
    m.counter.value = static_cast<double>(v);
    grpc.metric.push_back(std::move(m));
  }
  out.push_back(std::move(grpc));

  auto durations = family("meshd_request_duration_seconds",
                          "Time from the request's first byte to the response's last byte.", MetricType::Histogram);
  for (const auto& [k, h] : s.merged.durations) {
    auto m = metric({{"direction", direction_name(k.direction)}, {"virtual_service", *k.service},
                     {"target_virtual_node", *k.node}});
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < h.buckets.size(); ++i) {
      cumulative += h.buckets[i];
      m.histogram.bucket.push_back({cumulative, i < kDurationBuckets.size() ? kDurationBuckets[i]
                                                                            : std::numeric_limits<double>::infinity()});
    }
    m.histogram.sample_count = h.count;
    m.histogram.sample_sum = h.sum;
    durations.metric.push_back(std::move(m));
  }
  out.push_back(std::move(durations));

  auto retries = family("meshd_upstream_retries_total", "Retries sent upstream.", MetricType::Counter);
  for (const auto& [k, v] : s.merged.retries) {
    auto m = metric({{"virtual_service", *k.a}, {"route", *k.b}});
    m.counter.value = static_cast<double>(v);
    retries.metric.push_back(std::move(m));
  }
  out.push_back(std::move(retries));

  auto timeouts = family("meshd_upstream_timeouts_total", "Upstream attempts abandoned at a timeout.", MetricType::Counter);
  for (const auto& [k, v] : s.merged.timeouts) {
    auto m = metric({{"virtual_service", *k.a}, {"target_virtual_node", *k.b}});
    m.counter.value = static_cast<double>(v);
    timeouts.metric.push_back(std::move(m));
  }
  out.push_back(std::move(timeouts));

  auto upstream = family("meshd_upstream_connections_active", "Open upstream connections.", MetricType::Gauge);
  for (const auto& [k, v] : s.merged.upstream_connections) {
    auto m = metric({{"target_virtual_node", *k}});
    m.gauge.value = static_cast<double>(v);
    upstream.metric.push_back(std::move(m));
  }
  out.push_back(std::move(upstream));

  auto overflow = family("meshd_upstream_overflow_total", "Requests refused by a connection-pool limit.", MetricType::Counter);
  for (const auto& [k, v] : s.merged.overflow) {
    auto m = metric({{"target_virtual_node", *k}});
    m.counter.value = static_cast<double>(v);
    overflow.metric.push_back(std::move(m));
  }
  out.push_back(std::move(overflow));

  auto ejections = family("meshd_outlier_ejections_total", "Outlier ejections of endpoints.", MetricType::Counter);
  auto ejected = family("meshd_outlier_ejected_endpoints", "Endpoints ejected now.", MetricType::Gauge);
  for (const auto& o : s.outliers) {
    auto m = metric({{"target_virtual_node", o.node}});
    m.counter.value = static_cast<double>(o.ejections_total);
    ejections.metric.push_back(m);
    m.counter.value = 0;
    m.gauge.value = static_cast<double>(o.ejected);
    ejected.metric.push_back(std::move(m));
  }
  out.push_back(std::move(ejections));
  out.push_back(std::move(ejected));

  auto healthy = family("meshd_endpoint_healthy", "1 when the endpoint passes its health checks.", MetricType::Gauge);
  for (const auto& e : s.endpoints) {
    auto m = metric({{"target_virtual_node", e.node}, {"endpoint", e.endpoint}});
    m.gauge.value = e.healthy ? 1 : 0;
    healthy.metric.push_back(std::move(m));
  }
  out.push_back(std::move(healthy));

  auto downstream = family("meshd_downstream_connections_active", "Open downstream connections.", MetricType::Gauge);
  for (Direction d : {Direction::ingress, Direction::egress}) {
    auto m = metric({{"listener", direction_name(d)}});
    m.gauge.value = static_cast<double>(s.merged.downstream_connections[static_cast<std::size_t>(d)]);
    downstream.metric.push_back(std::move(m));
  }
  out.push_back(std::move(downstream));

  auto reloads = family("meshd_config_reloads_total", "Mesh file loads after the first, by result.", MetricType::Counter);
  for (const char* result : {"success", "failure"}) {
    auto m = metric({{"result", result}});
    auto it = s.config_reloads.find(result);
    m.counter.value = it == s.config_reloads.end() ? 0 : static_cast<double>(it->second);
    reloads.metric.push_back(std::move(m));
  }
  out.push_back(std::move(reloads));

  auto info = family("meshd_info", "meshd's version, mesh and virtual node.", MetricType::Gauge);
  auto m = metric({{"version", s.version}, {"mesh", s.mesh}, {"virtual_node", s.node}});
  m.gauge.value = 1;
  info.metric.push_back(std::move(m));
  out.push_back(std::move(info));
  return out;
}

std::string to_text(const std::vector<MetricFamily>& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace meshd::metrics
