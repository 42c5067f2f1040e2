#pragma once
// What a load run measured, and its three renderings: the summary table (stdout),
// JSON (--json) and a self-contained HTML page (--html FILE) with inline SVG charts
// of the latency percentiles and of throughput over time.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bench/load/histogram.hpp"

namespace meshd::bench {

struct Result {
  std::string title;           // e.g. "GET http://svc.local/ (closed loop, 64 connections)"
  double seconds = 0;          // measured duration
  std::uint64_t requests = 0;  // completed with a response
  std::map<std::string, std::uint64_t> status_classes;  // "2xx" -> n
  std::map<std::string, std::uint64_t> errors;          // connect, timeout, reset, protocol
  std::vector<std::uint64_t> per_second;                // responses completed in each second
  Histogram latency;                                    // microseconds
  double target_rate = 0;                               // open loop: requests/s asked for
};

std::string summary_table(const Result& r);
std::string to_json(const Result& r);
std::string to_html(const Result& r);

}  // namespace meshd::bench
