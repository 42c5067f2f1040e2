#include <catch2/catch.hpp>

#include "metrics/collector.hpp"

using namespace meshd::metrics;

TEST_CASE("shards merge and render in the Prometheus text format") {
  Shard a, b;
  const auto* svc = intern("svc.local");
  const auto* route = intern("canary");
  const auto* node = intern("v1");
  CHECK(intern("svc.local") == svc);  // interned: same text, same pointer
  a.requests[{Direction::egress, svc, route, node, 200}] += 3;
  b.requests[{Direction::egress, svc, route, node, 200}] += 4;
  b.requests[{Direction::egress, empty_label(), empty_label(), empty_label(), 403}] += 1;
  a.durations[{Direction::egress, svc, node}].observe(0.0002);
  b.durations[{Direction::egress, svc, node}].observe(0.3);
  a.downstream_connections[1] = 2;
  b.downstream_connections[1] = 1;
  a.merge(b);
  Collector c([&] {
    Snapshot s;
    s.merged = a;
    s.endpoints.push_back({"v1", "127.0.0.1:8080", true, false});
    s.version = "1.2.3";
    s.mesh = "m";
    s.node = "client";
    return s;
  });
  const std::string text = to_text(c.Collect());
  INFO(text);
  CHECK(text.find("meshd_requests_total{direction=\"egress\",virtual_service=\"svc.local\",route=\"canary\","
                  "target_virtual_node=\"v1\",code=\"200\"} 7") != std::string::npos);
  CHECK(text.find("code=\"403\"} 1") != std::string::npos);
  CHECK(text.find("meshd_request_duration_seconds_bucket{direction=\"egress\",virtual_service=\"svc.local\","
                  "target_virtual_node=\"v1\",le=\"0.0005\"} 1") != std::string::npos);
  CHECK(text.find("le=\"+Inf\"} 2") != std::string::npos);
  CHECK(text.find("meshd_downstream_connections_active{listener=\"egress\"} 3") != std::string::npos);
  CHECK(text.find("meshd_endpoint_healthy{target_virtual_node=\"v1\",endpoint=\"127.0.0.1:8080\"} 1") != std::string::npos);
  CHECK(text.find("meshd_info{version=\"1.2.3\",mesh=\"m\",virtual_node=\"client\"} 1") != std::string::npos);
  CHECK(text.find("meshd_config_reloads_total{result=\"failure\"} 0") != std::string::npos);
}
