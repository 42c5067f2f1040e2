#include "mesh/cluster/resilience.hpp"

#include <algorithm>

#include "mesh/cluster/endpoints.hpp"

namespace meshd::mesh {

bool HealthState::record(bool pass) {
  if (pass) {
    failures_ = 0;
    ++passes_;
    // An endpoint's first pass ever makes it usable; later it takes the threshold.
    if (!ever_passed_ || passes_ >= healthy_threshold_) healthy_ = true;
    ever_passed_ = true;
  } else {
    passes_ = 0;
    ++failures_;
    if (!ever_passed_ || failures_ >= unhealthy_threshold_) healthy_ = false;
  }
  checked_once_ = true;
  return healthy_;
}

std::chrono::milliseconds ejection_duration(std::chrono::milliseconds base, std::uint32_t n) {
  const auto cap = std::max(base, std::chrono::milliseconds(300000));
  if (n == 0) n = 1;
  // base × n, saturating before it could overflow
  if (base.count() > 0 && static_cast<std::int64_t>(n) > cap.count() / base.count()) return cap;
  return std::min(base * static_cast<std::int64_t>(n), cap);
}

std::size_t max_ejected(std::size_t total, int max_ejection_percent) {
  const std::size_t allowed = total * static_cast<std::size_t>(std::clamp(max_ejection_percent, 0, 100)) / 100;
  return std::max<std::size_t>(allowed, total > 0 ? 1 : 0);
}

std::chrono::milliseconds backoff_ceiling(std::chrono::milliseconds base, std::chrono::milliseconds max,
                                          std::uint32_t attempt) {
  auto cap = base;
  for (std::uint32_t i = 0; i < attempt && cap < max; ++i) cap *= 2;
  return std::min(cap, max);
}

bool retry_budget_allows(std::uint32_t retries_in_flight, std::uint32_t active_requests, std::uint32_t percent,
                         std::uint32_t min_concurrent) {
  const std::uint64_t by_percent = static_cast<std::uint64_t>(active_requests) * percent / 100;
  const std::uint64_t limit = std::max<std::uint64_t>(min_concurrent, by_percent);
  return retries_in_flight < limit;
}

TokenBucket::TokenBucket(std::int64_t rate, std::chrono::nanoseconds per)
    : interval_ns_(std::max<std::int64_t>(1, per.count() / std::max<std::int64_t>(1, rate))),
      tolerance_ns_(interval_ns_ * std::max<std::int64_t>(0, rate - 1)) {}

std::optional<std::chrono::nanoseconds> TokenBucket::take(std::chrono::nanoseconds now) {
  const std::int64_t t = now.count();
  std::int64_t tat = tat_.load(std::memory_order_relaxed);
  for (int i = 0; i < 1000; ++i) {
    const std::int64_t start = std::max(tat, t);
    if (start - t > tolerance_ns_) return std::chrono::nanoseconds(start - t - tolerance_ns_);
    if (tat_.compare_exchange_weak(tat, start + interval_ns_, std::memory_order_relaxed)) return std::nullopt;
  }
  return std::chrono::nanoseconds(interval_ns_);  // heavy contention: refuse this one
}

std::uint64_t hash64(std::string_view s) {
  // FNV-1a, then a 64-bit finalizer (splitmix) for a well-spread ring.
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

std::vector<std::pair<std::uint64_t, std::uint32_t>> build_ring(const std::vector<std::shared_ptr<Endpoint>>& eps) {
  std::vector<std::pair<std::uint64_t, std::uint32_t>> ring;
  ring.reserve(eps.size() * 100);
  for (std::uint32_t i = 0; i < eps.size(); ++i) {
    for (int v = 0; v < 100; ++v) ring.emplace_back(hash64(eps[i]->text + "#" + std::to_string(v)), i);
  }
  std::sort(ring.begin(), ring.end());
  return ring;
}

namespace {

bool usable(const Endpoint& e) {
  return e.healthy.load(std::memory_order_relaxed) && !e.ejected.load(std::memory_order_relaxed);
}

bool avoided(const LbInput& in, const Endpoint* e) {
  return std::find(in.avoid.begin(), in.avoid.end(), e) != in.avoid.end();
}

}  // namespace

std::shared_ptr<Endpoint> pick_endpoint(const LbInput& in, std::mt19937_64& rng) {
  const auto& eps = *in.endpoints;
  const std::size_t n = eps.size();
  if (n == 0) return nullptr;
  std::size_t usable_count = 0;
  for (const auto& e : eps) usable_count += usable(*e) ? 1 : 0;
  const bool panic = usable_count * 2 < n;  // spread over all of them
  auto ok = [&](const Endpoint& e) { return panic || usable(e); };

  if (in.policy == LbPolicy::RING_HASH && in.hash_key && in.ring != nullptr && !in.ring->empty()) {
    const std::uint64_t h = hash64(*in.hash_key);
    auto it = std::lower_bound(in.ring->begin(), in.ring->end(), std::make_pair(h, std::uint32_t{0}));
    std::shared_ptr<Endpoint> fallback;
    for (std::size_t step = 0; step < in.ring->size(); ++step, ++it) {
      if (it == in.ring->end()) it = in.ring->begin();
      const auto& e = eps[it->second];
      if (!ok(*e)) continue;
      if (!avoided(in, e.get())) return e;
      if (!fallback) fallback = e;
    }
    return fallback;
  }
  if (in.policy == LbPolicy::LEAST_REQUEST || in.policy == LbPolicy::RANDOM || in.policy == LbPolicy::RING_HASH) {
    // RANDOM; LEAST_REQUEST: the better of two random choices; RING_HASH without a key: random.
    std::vector<std::uint32_t> candidates;
    candidates.reserve(n);
    for (std::uint32_t i = 0; i < n; ++i) {
      if (ok(*eps[i]) && !avoided(in, eps[i].get())) candidates.push_back(i);
    }
    if (candidates.empty()) {
      for (std::uint32_t i = 0; i < n; ++i) {
        if (ok(*eps[i])) candidates.push_back(i);
      }
    }
    if (candidates.empty()) return nullptr;
    const auto a = candidates[rng() % candidates.size()];
    if (in.policy != LbPolicy::LEAST_REQUEST || candidates.size() == 1) return eps[a];
    auto b = candidates[rng() % candidates.size()];
    if (b == a) b = candidates[(std::find(candidates.begin(), candidates.end(), a) - candidates.begin() + 1) % candidates.size()];
    return eps[a]->active_requests.load(std::memory_order_relaxed) <=
                   eps[b]->active_requests.load(std::memory_order_relaxed)
               ? eps[a]
               : eps[b];
  }
  // ROUND_ROBIN over usable endpoints, preferring one this request has not tried.
  std::shared_ptr<Endpoint> fallback;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& e = eps[(in.round_robin + i) % n];
    if (!ok(*e)) continue;
    if (!avoided(in, e.get())) return e;
    if (!fallback) fallback = e;
  }
  return fallback;
}

}  // namespace meshd::mesh
