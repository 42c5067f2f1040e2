#pragma once
// `meshd run`'s options (SPEC §2) and the limits of SPEC §6, settable with --set.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "net/log.hpp"

namespace meshd::proxy {

using std::chrono::milliseconds;

// Every limit and default of SPEC §6 (docs/configuration.md lists them).
struct Limits {
  std::size_t max_request_headers_bytes = 60 * 1024;
  std::size_t max_request_headers_count = 100;
  milliseconds request_header_timeout{10000};
  milliseconds downstream_idle_timeout{300000};
  milliseconds upstream_connect_timeout{5000};
  milliseconds upstream_idle_timeout_app{1000};    // pooled connections to the local app
  milliseconds upstream_idle_timeout_mesh{30000};  // pooled connections to mesh endpoints
  std::size_t retry_buffer_bytes = 64 * 1024;
  std::size_t max_connections_per_listener = 100000;
  milliseconds drain_min{5000};
  std::vector<std::string> dns_resolvers;  // IP[:PORT]; empty: /etc/resolv.conf
  milliseconds dns_refresh{5000};
  std::size_t max_idle_upstream_per_endpoint = 64;
  // HTTP/2 (SPEC §7)
  std::size_t h2_max_concurrent_streams = 100;
  std::size_t h2_max_header_list_bytes = 60 * 1024;
  std::size_t h2_initial_window_bytes = 64 * 1024;        // per stream
  std::size_t h2_connection_window_bytes = 1024 * 1024;  // per connection
  std::size_t h2_max_resets_per_second = 200;
  milliseconds h2_keepalive_interval{30000};  // upstream HTTP/2 PING after this long without a byte; 0: off

  // Applies "NAME=VALUE"; returns an error message, or empty.
  std::string set(const std::string& assignment);
  std::string describe() const;  // NAME=VALUE lines, for docs and /config_dump
};

struct RunOptions {
  std::string mesh_file;
  std::string node;
  std::string gateway;  // --gateway NAME: a virtual gateway (refused until gateways run)
  std::string mesh_from_env;  // the mesh name given in APPMESH_* (must match the file's)
  std::uint16_t ingress_port = 15000;  // the node's first listener
  // `--ingress-port LISTENER_PORT=PORT`: where each other listener of the node is
  // served (SPEC §9), in the order given.
  std::vector<std::pair<std::uint16_t, std::uint16_t>> listener_ports;
  std::uint16_t egress_port = 15001;
  std::optional<std::uint16_t> app_port;
  std::string admin = "127.0.0.1:9901";
  std::optional<std::string> stats;
  unsigned workers = 0;  // 0: default (affinity and cgroup quota)
  log::Level log_level = log::Level::info;
  milliseconds drain_timeout{20000};
  Limits limits;
};

// Parses `meshd run` arguments and the App Mesh environment. Returns an error
// message (usage) or empty.
std::string parse_run_options(const std::vector<std::string>& args, RunOptions& out);

// "20s", "1500ms", "2m", or a bare number of seconds.
std::optional<milliseconds> parse_duration(const std::string& text);

}  // namespace meshd::proxy
