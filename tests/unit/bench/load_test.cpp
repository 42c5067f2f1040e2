// The load generator's parts: histogram accuracy, open-loop scheduling, requests,
// and the three report renderings.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "bench/load/generator.hpp"
#include "bench/load/histogram.hpp"
#include "bench/load/report.hpp"

using namespace meshd::bench;

TEST_CASE("histogram percentiles are within 1.6 % of the exact values") {
  Histogram h;
  std::vector<std::uint64_t> values;
  std::mt19937_64 rng(5);
  std::lognormal_distribution<double> dist(6.0, 1.5);  // microseconds, a long tail
  for (int i = 0; i < 200000; ++i) {
    const auto v = static_cast<std::uint64_t>(dist(rng)) + 1;
    values.push_back(v);
    h.record(v);
  }
  std::sort(values.begin(), values.end());
  for (double p : {50.0, 90.0, 99.0, 99.9}) {
    const auto exact = values[static_cast<std::size_t>(std::ceil(p / 100 * values.size())) - 1];
    const auto got = h.percentile(p);
    INFO("p" << p << " exact " << exact << " got " << got);
    CHECK(got >= exact);
    CHECK(static_cast<double>(got) <= static_cast<double>(exact) * 1.016 + 1);
  }
  CHECK(h.percentile(100) == values.back());
  CHECK(h.max() == values.back());
  CHECK(h.min() == values.front());
  CHECK(h.count() == values.size());
  Histogram other;
  other.record(5);
  h.merge(other);
  CHECK(h.count() == values.size() + 1);
  CHECK(Histogram().percentile(99) == 0);
}

TEST_CASE("open-loop schedule: each connection at rate/connections, staggered") {
  // 1,000 req/s over 16 connections: each sends every 16 ms; connection 8 starts at 8 ms.
  CHECK(scheduled_offset(1000, 16, 0, 0).count() == 0);
  CHECK(scheduled_offset(1000, 16, 0, 1).count() == 16000000);
  CHECK(scheduled_offset(1000, 16, 8, 0).count() == 8000000);
  CHECK(scheduled_offset(1000, 16, 8, 2).count() == 40000000);
  // In all: 1,000 sends in the first second.
  int in_first_second = 0;
  for (unsigned c = 0; c < 16; ++c) {
    for (std::uint64_t k = 0; k < 100; ++k) in_first_second += scheduled_offset(1000, 16, c, k).count() < 1000000000 ? 1 : 0;
  }
  CHECK(in_first_second == 1000);
}

TEST_CASE("requests carry the target, headers and body") {
  LoadConfig cfg;
  cfg.headers = {{"x-a", "1"}};
  cfg.body = "hi";
  cfg.keep_alive = false;
  Target t{"POST", "svc.local", "/p"};
  CHECK(build_request(cfg, t) ==
        "POST /p HTTP/1.1\r\nHost: svc.local\r\nx-a: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi");
}

TEST_CASE("reports: table, JSON and a self-contained HTML page") {
  Result r;
  r.title = "GET http://svc.local/ <test>";
  r.seconds = 2;
  r.requests = 4;
  r.status_classes["2xx"] = 3;
  r.status_classes["5xx"] = 1;
  r.errors["timeout"] = 2;
  r.per_second = {3, 1};
  for (std::uint64_t v : {1000, 2000, 3000, 40000}) r.latency.record(v);
  const auto table = summary_table(r);
  CHECK(table.find("throughput") != std::string::npos);
  CHECK(table.find(" 2.0 /s\n") != std::string::npos);
  CHECK(table.find("error timeout: 2") != std::string::npos);
  const auto json = to_json(r);
  CHECK(json.find("\"requests\":4") != std::string::npos);
  CHECK(json.find("\"max\":40.000") != std::string::npos);
  CHECK(json.find("\"per_second\":[3,1]") != std::string::npos);
  CHECK(json.find("\"errors\":{\"timeout\":2}") != std::string::npos);
  const auto html = to_html(r);
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(html.find("<svg") != std::string::npos);
  CHECK(html.find("Latency by percentile") != std::string::npos);
  CHECK(html.find("Throughput") != std::string::npos);
  CHECK(html.find("&lt;test&gt;") != std::string::npos);  // escaped
  CHECK(html.find("http://svc.local/ <test>") == std::string::npos);
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("src=") == std::string::npos);  // no network resource
}
