#pragma once
// Data-path statistics (SPEC §5): plain counters and histograms, one Shard per worker,
// written only by its worker (no atomics shared between workers, no locks, no
// prometheus-cpp call per request). A scrape copies each shard on its own worker and
// merges the copies (collector.hpp). Labels are interned strings (intern()), so a
// request's key is a few pointers.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "net/intern.hpp"

namespace meshd::metrics {

// A stable pointer for a label value (the same text gives the same pointer). Called
// when a snapshot is compiled, never per request. The interner lives in net/ (below
// mesh/, which interns the labels without depending on metrics/); these are its names.
using net::empty_label;
using net::intern;

enum class Direction : std::uint8_t { ingress = 0, egress = 1 };

struct RequestKey {
  Direction direction;
  const std::string* service;
  const std::string* route;
  const std::string* node;
  std::uint16_t code;
  bool operator==(const RequestKey&) const = default;
};
struct PairKey {
  const std::string* a;
  const std::string* b;
  bool operator==(const PairKey&) const = default;
};
struct DurationKey {
  Direction direction;
  const std::string* service;
  const std::string* node;
  bool operator==(const DurationKey&) const = default;
};

struct KeyHash {
  std::size_t operator()(const RequestKey& k) const;
  std::size_t operator()(const PairKey& k) const;
  std::size_t operator()(const DurationKey& k) const;
};

// Upper bounds in seconds; the last bucket is +Inf.
inline constexpr std::array<double, 12> kDurationBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                            0.05,   0.1,   0.25,   0.5,   1.0,  5.0};
struct Histogram {
  std::array<std::uint64_t, kDurationBuckets.size() + 1> buckets{};  // not cumulative
  std::uint64_t count = 0;
  double sum = 0;
  void observe(double seconds);
  void merge(const Histogram& o);
};

struct Shard {
  std::unordered_map<RequestKey, std::uint64_t, KeyHash> requests;
  std::unordered_map<RequestKey, std::uint64_t, KeyHash> grpc_responses;  // code: the grpc-status
  std::unordered_map<DurationKey, Histogram, KeyHash> durations;
  std::unordered_map<PairKey, std::uint64_t, KeyHash> retries;   // service, route
  std::unordered_map<PairKey, std::uint64_t, KeyHash> timeouts;  // service, node
  std::unordered_map<const std::string*, std::int64_t> upstream_connections;  // node: gauge
  std::unordered_map<const std::string*, std::uint64_t> overflow;             // node
  std::array<std::int64_t, 2> downstream_connections{};                       // by Direction

  void merge(const Shard& o);
};

}  // namespace meshd::metrics
