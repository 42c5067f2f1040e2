#include "proxy/run_options.hpp"

#include <charconv>
#include <cstdlib>
#include <sstream>

#include "net/address.hpp"

namespace meshd::proxy {
namespace {

std::optional<std::uint64_t> parse_uint(const std::string& s) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// "k" and "Ki" suffixes for byte sizes.
std::optional<std::uint64_t> parse_size(std::string s) {
  std::uint64_t mult = 1;
  if (s.size() > 2 && (s.ends_with("Ki") || s.ends_with("KiB"))) {
    s.erase(s.find('K'));
    mult = 1024;
  } else if (s.size() > 2 && (s.ends_with("Mi") || s.ends_with("MiB"))) {
    s.erase(s.find('M'));
    mult = 1024 * 1024;
  }
  auto v = parse_uint(s);
  if (!v) return std::nullopt;
  return *v * mult;
}

std::optional<std::uint16_t> parse_port(const std::string& s) {
  auto v = parse_uint(s);
  if (!v || *v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(*v);
}

// The node name from App Mesh's forms: an ARN, "mesh/M/virtualNode/N", or "N".
bool node_from_resource(const std::string& value, std::string& mesh, std::string& node) {
  auto pos = value.find("mesh/");
  if (pos == std::string::npos) {
    if (value.find('/') != std::string::npos || value.empty()) return false;
    node = value;
    return true;
  }
  const std::string rest = value.substr(pos + 5);
  const auto slash = rest.find('/');
  if (slash == std::string::npos) return false;
  mesh = rest.substr(0, slash);
  const std::string kind_and_name = rest.substr(slash + 1);
  const std::string prefix = "virtualNode/";
  if (kind_and_name.rfind(prefix, 0) != 0) return false;
  node = kind_and_name.substr(prefix.size());
  return !node.empty() && !mesh.empty() && node.find('/') == std::string::npos;
}

}  // namespace

std::optional<milliseconds> parse_duration(const std::string& text) {
  std::string s = text;
  std::uint64_t mult = 1000;
  if (s.ends_with("ms")) {
    s.resize(s.size() - 2);
    mult = 1;
  } else if (s.ends_with("s")) {
    s.resize(s.size() - 1);
  } else if (s.ends_with("m")) {
    s.resize(s.size() - 1);
    mult = 60000;
  }
  auto v = parse_uint(s);
  if (!v || *v > 100000000) return std::nullopt;
  return milliseconds(*v * mult);
}

std::string Limits::set(const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos) return "--set takes NAME=VALUE, got '" + assignment + "'";
  const std::string name = assignment.substr(0, eq);
  const std::string value = assignment.substr(eq + 1);
  auto size = [&](std::size_t& dst) -> std::string {
    auto v = parse_size(value);
    if (!v || *v == 0) return "--set " + name + ": expected a positive number, got '" + value + "'";
    dst = *v;
    return {};
  };
  auto dur = [&](milliseconds& dst) -> std::string {
    auto v = parse_duration(value);
    if (!v) return "--set " + name + ": expected a duration like 10s or 500ms, got '" + value + "'";
    dst = *v;
    return {};
  };
  if (name == "max_request_headers_bytes") return size(max_request_headers_bytes);
  if (name == "max_request_headers_count") return size(max_request_headers_count);
  if (name == "request_header_timeout") return dur(request_header_timeout);
  if (name == "downstream_idle_timeout") return dur(downstream_idle_timeout);
  if (name == "upstream_connect_timeout") return dur(upstream_connect_timeout);
  if (name == "upstream_idle_timeout") {
    // One value sets both; the split names set one each.
    if (auto e = dur(upstream_idle_timeout_app); !e.empty()) return e;
    upstream_idle_timeout_mesh = upstream_idle_timeout_app;
    return {};
  }
  if (name == "upstream_idle_timeout_app") return dur(upstream_idle_timeout_app);
  if (name == "upstream_idle_timeout_mesh") return dur(upstream_idle_timeout_mesh);
  if (name == "retry_buffer_bytes") return size(retry_buffer_bytes);
  if (name == "max_connections_per_listener") return size(max_connections_per_listener);
  if (name == "drain_min") return dur(drain_min);
  if (name == "dns_refresh") return dur(dns_refresh);
  if (name == "max_idle_upstream_per_endpoint") return size(max_idle_upstream_per_endpoint);
  // HTTP/2 windows and limits are 31-bit quantities on the wire (RFC 9113 §6.9.1).
  auto h2 = [&](std::size_t& dst, std::size_t min) -> std::string {
    std::size_t v = 0;
    if (auto e = size(v); !e.empty()) return e;
    if (v < min || v > 0x7fffffff) {
      return "--set " + name + ": expected " + std::to_string(min) + " to 2147483647, got '" + value + "'";
    }
    dst = v;
    return {};
  };
  if (name == "h2_max_concurrent_streams") return h2(h2_max_concurrent_streams, 1);
  if (name == "h2_max_header_list_bytes") return h2(h2_max_header_list_bytes, 1024);
  if (name == "h2_initial_window_bytes") return h2(h2_initial_window_bytes, 1024);
  if (name == "h2_connection_window_bytes") return h2(h2_connection_window_bytes, 65535);
  if (name == "h2_max_resets_per_second") return h2(h2_max_resets_per_second, 1);
  if (name == "h2_keepalive_interval") return dur(h2_keepalive_interval);
  if (name == "dns_resolvers") {
    dns_resolvers.clear();
    std::stringstream ss(value);
    std::string item;
    while (std::getline(ss, item, ',')) {
      auto hp = net::split_host_port(item);
      if (!hp || !net::parse_ip(hp->host)) return "--set dns_resolvers: '" + item + "' is not IP[:PORT]";
      dns_resolvers.push_back(item);
    }
    if (dns_resolvers.empty()) return "--set dns_resolvers: expected IP[:PORT],...";
    return {};
  }
  return "--set: unknown name '" + name + "' (see docs/configuration.md for the list)";
}

std::string Limits::describe() const {
  std::ostringstream out;
  out << "max_request_headers_bytes=" << max_request_headers_bytes << "\n"
      << "max_request_headers_count=" << max_request_headers_count << "\n"
      << "request_header_timeout=" << request_header_timeout.count() << "ms\n"
      << "downstream_idle_timeout=" << downstream_idle_timeout.count() << "ms\n"
      << "upstream_connect_timeout=" << upstream_connect_timeout.count() << "ms\n"
      << "upstream_idle_timeout_app=" << upstream_idle_timeout_app.count() << "ms\n"
      << "upstream_idle_timeout_mesh=" << upstream_idle_timeout_mesh.count() << "ms\n"
      << "retry_buffer_bytes=" << retry_buffer_bytes << "\n"
      << "max_connections_per_listener=" << max_connections_per_listener << "\n"
      << "drain_min=" << drain_min.count() << "ms\n"
      << "dns_refresh=" << dns_refresh.count() << "ms\n"
      << "max_idle_upstream_per_endpoint=" << max_idle_upstream_per_endpoint << "\n"
      << "h2_max_concurrent_streams=" << h2_max_concurrent_streams << "\n"
      << "h2_max_header_list_bytes=" << h2_max_header_list_bytes << "\n"
      << "h2_initial_window_bytes=" << h2_initial_window_bytes << "\n"
      << "h2_connection_window_bytes=" << h2_connection_window_bytes << "\n"
      << "h2_max_resets_per_second=" << h2_max_resets_per_second << "\n"
      << "h2_keepalive_interval=" << h2_keepalive_interval.count() << "ms\n";
  return out.str();
}

std::string parse_run_options(const std::vector<std::string>& args, RunOptions& out) {
  if (const char* env = std::getenv("MESHD_MESH_FILE")) out.mesh_file = env;
  // The node as App Mesh's Envoy image reads it: ARN, then RESOURCE_NAME, then VIRTUAL_NODE_NAME.
  for (const char* var : {"APPMESH_RESOURCE_ARN", "APPMESH_RESOURCE_NAME", "APPMESH_VIRTUAL_NODE_NAME"}) {
    const char* env = std::getenv(var);
    if (env == nullptr || *env == '\0') continue;
    std::string mesh, node;
    if (!node_from_resource(env, mesh, node)) {
      return std::string(var) + "='" + env + "' is not a virtual node (expected mesh/MESH/virtualNode/NAME)";
    }
    out.node = node;
    out.mesh_from_env = mesh;
    break;
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    std::string value;
    const bool has_inline = a.rfind("--", 0) == 0 && a.find('=') != std::string::npos;
    if (has_inline) {
      value = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
    }
    auto next = [&]() -> std::optional<std::string> {
      if (has_inline) return value;
      if (i + 1 >= args.size()) return std::nullopt;
      return args[++i];
    };
    auto v = next();
    if (!v) return a + " needs a value";
    if (a == "--mesh") {
      out.mesh_file = *v;
    } else if (a == "--node") {
      out.node = *v;
      out.mesh_from_env.clear();
    } else if (a == "--gateway") {
      out.gateway = *v;
    } else if (a == "--ingress-port" && v->find('=') != std::string::npos) {
      const auto eq = v->find('=');
      auto listener = parse_port(v->substr(0, eq));
      auto port = parse_port(v->substr(eq + 1));
      if (!listener || *listener == 0 || !port) {
        return "--ingress-port: expected PORT or LISTENER_PORT=PORT, got '" + *v + "'";
      }
      for (const auto& [l, p] : out.listener_ports) {
        if (l == *listener) return "--ingress-port: listener port " + std::to_string(*listener) + " given twice";
      }
      out.listener_ports.emplace_back(*listener, *port);
    } else if (a == "--ingress-port" || a == "--egress-port" || a == "--app-port") {
      auto p = parse_port(*v);
      if (!p || (a == "--app-port" && *p == 0)) return a + ": '" + *v + "' is not a port";
      (a == "--ingress-port" ? out.ingress_port : a == "--egress-port" ? out.egress_port : out.app_port.emplace()) = *p;
    } else if (a == "--admin") {
      out.admin = *v;
    } else if (a == "--stats") {
      out.stats = *v;
    } else if (a == "--workers") {
      auto n = parse_uint(*v);
      if (!n || *n == 0 || *n > 256) return "--workers: expected 1..256, got '" + *v + "'";
      out.workers = static_cast<unsigned>(*n);
    } else if (a == "--log-level") {
      auto level = log::parse_level(*v);
      if (!level) return "--log-level: expected trace, debug, info, warning, error or off, got '" + *v + "'";
      out.log_level = *level;
    } else if (a == "--drain-timeout") {
      auto d = parse_duration(*v);
      if (!d) return "--drain-timeout: expected a duration like 20s";
      out.drain_timeout = *d;
    } else if (a == "--set") {
      if (auto e = out.limits.set(*v); !e.empty()) return e;
    } else {
      return "unknown option " + a;
    }
  }
  if (out.mesh_file.empty()) return "run needs --mesh FILE (or MESHD_MESH_FILE)";
  if (!out.gateway.empty() && !out.node.empty()) return "run takes --node or --gateway, not both";
  if (out.node.empty() && out.gateway.empty()) {
    return "run needs --node NAME (or APPMESH_RESOURCE_ARN / APPMESH_VIRTUAL_NODE_NAME)";
  }
  {
    auto hp = net::split_host_port(out.admin, true);
    if (!hp || !hp->port || !net::parse_ip(hp->host)) return "--admin: expected IP:PORT, got '" + out.admin + "'";
  }
  if (out.stats) {
    auto hp = net::split_host_port(*out.stats, true);
    if (!hp || !hp->port || !net::parse_ip(hp->host)) return "--stats: expected IP:PORT, got '" + *out.stats + "'";
  }
  return {};
}

}  // namespace meshd::proxy
