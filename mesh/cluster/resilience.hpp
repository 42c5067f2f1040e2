#pragma once
// The resilience state machines, free of sockets and clocks (times are arguments, so
// tests inject them): health-check thresholds, outlier ejection, the retry budget,
// the rate-limit token bucket, and endpoint selection for each load-balancing policy.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string_view>
#include <span>
#include <vector>

#include "mesh/config/model.hpp"

namespace meshd::mesh {

struct Endpoint;

// Active health checking (App Mesh healthCheck): an endpoint starts unhealthy and
// becomes healthy at its first pass ever; after that it takes `unhealthy_threshold`
// failures in a row to become unhealthy and `healthy_threshold` passes to recover.
class HealthState {
 public:
  HealthState(int healthy_threshold, int unhealthy_threshold)
      : healthy_threshold_(healthy_threshold), unhealthy_threshold_(unhealthy_threshold) {}
  // Returns the health after this result.
  bool record(bool pass);
  bool healthy() const { return healthy_; }
  bool checked_once() const { return checked_once_; }

 private:
  int healthy_threshold_;
  int unhealthy_threshold_;
  bool healthy_ = false;
  bool checked_once_ = false;
  bool ever_passed_ = false;
  int passes_ = 0;
  int failures_ = 0;
};

// The n-th ejection of an endpoint lasts min(base × n, max(base, 300 s)) (SPEC §3).
std::chrono::milliseconds ejection_duration(std::chrono::milliseconds base, std::uint32_t n);
// How many of `total` endpoints may be ejected at once: maxEjectionPercent of them,
// but at least one (App Mesh: "ejects at least 1 host").
std::size_t max_ejected(std::size_t total, int max_ejection_percent);

// Full-jitter backoff: a retry waits uniformly in [0, ceiling], the ceiling being
// min(max, base × 2^attempt).
std::chrono::milliseconds backoff_ceiling(std::chrono::milliseconds base, std::chrono::milliseconds max,
                                          std::uint32_t attempt);

// The retry budget (SPEC §1, Envoy's): retries in flight to a node stay at or under
// max(min_concurrent, percent × its active requests).
bool retry_budget_allows(std::uint32_t retries_in_flight, std::uint32_t active_requests, std::uint32_t percent,
                         std::uint32_t min_concurrent);

// A token bucket shared by every worker, lock-free (GCRA): `rate` requests per
// `per`, with a burst of `rate`.
class TokenBucket {
 public:
  TokenBucket(std::int64_t rate, std::chrono::nanoseconds per);
  // nullopt: allowed; otherwise how long until a token is free (for Retry-After).
  std::optional<std::chrono::nanoseconds> take(std::chrono::nanoseconds now);

 private:
  std::int64_t interval_ns_;   // between tokens
  std::int64_t tolerance_ns_;  // burst
  std::atomic<std::int64_t> tat_{0};  // theoretical arrival time
};

// Endpoint selection. `usable` says whether an endpoint may get traffic (healthy,
// not ejected); when fewer than half of the endpoints are usable, all of them are
// (Envoy's panic threshold), so a broken health check cannot black-hole a service.
struct LbInput {
  const std::vector<std::shared_ptr<Endpoint>>* endpoints = nullptr;
  const std::vector<std::pair<std::uint64_t, std::uint32_t>>* ring = nullptr;  // RING_HASH
  LbPolicy policy = LbPolicy::ROUND_ROBIN;
  std::uint32_t round_robin = 0;          // the worker's counter for this cluster
  std::optional<std::string_view> hash_key;  // RING_HASH: the hashOn header's value
  std::span<const Endpoint* const> avoid;  // tried already by this request
};
std::shared_ptr<Endpoint> pick_endpoint(const LbInput& in, std::mt19937_64& rng);

// The consistent-hash ring for RING_HASH: 100 points per endpoint.
std::vector<std::pair<std::uint64_t, std::uint32_t>> build_ring(const std::vector<std::shared_ptr<Endpoint>>& eps);
std::uint64_t hash64(std::string_view s);

}  // namespace meshd::mesh
