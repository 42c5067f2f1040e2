#include "metrics/stats.hpp"

#include <functional>

namespace meshd::metrics {

namespace {
std::size_t mix(std::size_t h, std::size_t v) { return h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)); }
std::size_t ptr(const void* p) { return std::hash<const void*>()(p); }
}  // namespace

std::size_t KeyHash::operator()(const RequestKey& k) const {
  std::size_t h = mix(ptr(k.service), ptr(k.route));
  h = mix(h, ptr(k.node));
  return mix(h, (static_cast<std::size_t>(k.direction) << 16) | k.code);
}
std::size_t KeyHash::operator()(const PairKey& k) const { return mix(ptr(k.a), ptr(k.b)); }
std::size_t KeyHash::operator()(const DurationKey& k) const {
  return mix(mix(ptr(k.service), ptr(k.node)), static_cast<std::size_t>(k.direction));
}

void Histogram::observe(double seconds) {
  std::size_t i = 0;
  while (i < kDurationBuckets.size() && seconds > kDurationBuckets[i]) ++i;
  ++buckets[i];
  ++count;
  sum += seconds;
}

void Histogram::merge(const Histogram& o) {
  for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
  count += o.count;
  sum += o.sum;
}

void Shard::merge(const Shard& o) {
  for (const auto& [k, v] : o.requests) requests[k] += v;
  for (const auto& [k, v] : o.grpc_responses) grpc_responses[k] += v;
  for (const auto& [k, v] : o.durations) durations[k].merge(v);
  for (const auto& [k, v] : o.retries) retries[k] += v;
  for (const auto& [k, v] : o.timeouts) timeouts[k] += v;
  for (const auto& [k, v] : o.upstream_connections) upstream_connections[k] += v;
  for (const auto& [k, v] : o.overflow) overflow[k] += v;
  for (std::size_t i = 0; i < downstream_connections.size(); ++i) downstream_connections[i] += o.downstream_connections[i];
}

}  // namespace meshd::metrics
