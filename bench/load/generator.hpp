#pragma once
// The load generator: N connections over T threads (one io_context each), closed loop
// (each connection sends its next request as soon as the last answered) or open loop
// at a fixed rate, where each request has a scheduled send time and its latency is
// measured from that time, so a stalled server is charged for the requests it
// delayed (coordinated omission corrected, as wrk2 does).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/load/report.hpp"

namespace meshd::bench {

struct Target {
  std::string method = "GET";
  std::string host;  // Host header
  std::string path = "/";
};

struct LoadConfig {
  std::string connect_ip = "127.0.0.1";
  std::uint16_t connect_port = 0;
  std::vector<Target> targets;  // used in turn
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  unsigned connections = 64;
  unsigned threads = 1;
  double duration_s = 10;
  std::uint64_t max_requests = 0;  // 0: until the duration
  double rate = 0;                 // requests/s in all; 0: closed loop
  double timeout_s = 10;
  bool keep_alive = true;          // false: a new connection per request
  bool progress = true;
  unsigned h2_streams = 0;         // > 0: HTTP/2 (h2c), this many streams in flight per connection
  bool grpc = false;               // HTTP/2 gRPC unary calls (the body as one message)
};

// Schedules of the open loop: the k-th request of connection c (of n) at rate r.
std::chrono::nanoseconds scheduled_offset(double rate, unsigned connections, unsigned connection, std::uint64_t k);

// The request bytes for a target.
std::string build_request(const LoadConfig& cfg, const Target& t);

// HTTP/1.1, or HTTP/2 when cfg.h2_streams > 0 (h2_generator.cpp).
Result run_load(const LoadConfig& cfg);
Result run_load_h2(const LoadConfig& cfg);

}  // namespace meshd::bench
