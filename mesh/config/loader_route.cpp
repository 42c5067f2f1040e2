// Routes and gateway routes, and the match pieces they share.
#include <re2/re2.h>

#include "mesh/config/loader_parts.hpp"

namespace meshd::mesh::detail {

std::optional<Protocol> read_protocol(Reader& r, const YAML::Node& n, bool allow_tcp) {
  if (allow_tcp) {
    return r.enumeration<Protocol>(n, {{"http", Protocol::http},
                                       {"http2", Protocol::http2},
                                       {"grpc", Protocol::grpc},
                                       {"tcp", Protocol::tcp}});
  }
  return r.enumeration<Protocol>(
      n, {{"http", Protocol::http}, {"http2", Protocol::http2}, {"grpc", Protocol::grpc}});
}

std::optional<PortMapping> read_port_mapping(Reader& r, const YAML::Node& n, bool allow_tcp) {
  MapReader m(r, n, {"port", "protocol"});
  if (!m.ok()) return std::nullopt;
  std::optional<std::int32_t> port;
  std::optional<Protocol> protocol;
  m.required("port", [&](const YAML::Node& v) { port = r.port(v); });
  m.required("protocol", [&](const YAML::Node& v) { protocol = read_protocol(r, v, allow_tcp); });
  if (!port || !protocol) return std::nullopt;
  return PortMapping{*port, *protocol};
}

std::optional<IpPreference> read_ip_preference(Reader& r, const YAML::Node& n) {
  return r.enumeration<IpPreference>(n, {{"IPv6_PREFERRED", IpPreference::IPv6_PREFERRED},
                                         {"IPv4_PREFERRED", IpPreference::IPv4_PREFERRED},
                                         {"IPv4_ONLY", IpPreference::IPv4_ONLY},
                                         {"IPv6_ONLY", IpPreference::IPv6_ONLY}});
}

std::optional<HttpMethod> read_method(Reader& r, const YAML::Node& n) {
  return r.enumeration<HttpMethod>(
      n, {{"GET", HttpMethod::GET}, {"HEAD", HttpMethod::HEAD}, {"POST", HttpMethod::POST},
          {"PUT", HttpMethod::PUT}, {"DELETE", HttpMethod::DELETE}, {"CONNECT", HttpMethod::CONNECT},
          {"OPTIONS", HttpMethod::OPTIONS}, {"TRACE", HttpMethod::TRACE}, {"PATCH", HttpMethod::PATCH}});
}

void check_regex(Reader& r, const YAML::Node& n, const std::string& pattern) {
  RE2::Options options;
  options.set_log_errors(false);
  RE2 re(pattern, options);
  if (!re.ok()) r.error(n, "invalid regular expression (RE2 syntax): " + re.error());
}

std::vector<HeaderMatch> read_header_matches(Reader& r, const YAML::Node& n) {
  std::vector<HeaderMatch> out;
  r.list(n, 1, 10, [&](const YAML::Node& e, std::size_t) {
    MapReader m(r, e, {"name", "invert", "match"});
    HeaderMatch h;
    h.mark = yaml::mark_of(e);
    m.required("name", [&](const YAML::Node& v) { h.name = r.string(v, 1, 50).value_or(""); });
    m.optional("invert", [&](const YAML::Node& v) { h.invert = r.boolean(v).value_or(false); });
    m.optional("match", [&](const YAML::Node& v) {
      MapReader mm(r, v, {"exact", "prefix", "suffix", "regex", "range"});
      static constexpr HeaderMatchMethod::Kind kinds[] = {
          HeaderMatchMethod::Kind::exact, HeaderMatchMethod::Kind::prefix,
          HeaderMatchMethod::Kind::suffix, HeaderMatchMethod::Kind::regex,
          HeaderMatchMethod::Kind::range};
      static constexpr std::string_view keys[] = {"exact", "prefix", "suffix", "regex", "range"};
      const int which = mm.one_of({"exact", "prefix", "suffix", "regex", "range"});
      if (which < 0) return;
      HeaderMatchMethod method;
      method.kind = kinds[which];
      mm.optional(keys[which], [&](const YAML::Node& x) {
        h.mark = yaml::mark_of(x);
        if (method.kind == HeaderMatchMethod::Kind::range) {
          MapReader rm(r, x, {"start", "end"});
          std::optional<std::int64_t> start, end;
          rm.required("start", [&](const YAML::Node& s) { start = r.integer(s, INT64_MIN, INT64_MAX); });
          rm.required("end", [&](const YAML::Node& s) { end = r.integer(s, INT64_MIN, INT64_MAX); });
          if (start && end) {
            if (*end <= *start) r.error(x, "range end must be greater than start (end is exclusive)");
            method.range = {*start, *end};
          }
        } else {
          method.value = r.string(x, 1, 255).value_or("");
          if (method.kind == HeaderMatchMethod::Kind::regex) check_regex(r, x, method.value);
        }
      });
      h.match = std::move(method);
    });
    out.push_back(std::move(h));
  });
  return out;
}

std::vector<QueryParameterMatch> read_query_parameters(Reader& r, const YAML::Node& n) {
  std::vector<QueryParameterMatch> out;
  r.list(n, 1, 10, [&](const YAML::Node& e, std::size_t) {
    MapReader m(r, e, {"name", "match"});
    QueryParameterMatch q;
    m.required("name", [&](const YAML::Node& v) { q.name = r.string(v).value_or(""); });
    m.optional("match", [&](const YAML::Node& v) {
      MapReader mm(r, v, {"exact"});
      mm.required("exact", [&](const YAML::Node& x) { q.exact = r.string(x, 0).value_or(""); });
    });
    out.push_back(std::move(q));
  });
  return out;
}

std::optional<PathMatch> read_path_match(Reader& r, const YAML::Node& n) {
  MapReader m(r, n, {"exact", "regex"});
  const int which = m.one_of({"exact", "regex"});
  if (which < 0) return std::nullopt;
  PathMatch p;
  p.kind = which == 0 ? PathMatch::Kind::exact : PathMatch::Kind::regex;
  m.optional(which == 0 ? "exact" : "regex", [&](const YAML::Node& v) {
    p.mark = yaml::mark_of(v);
    p.value = r.string(v, 1, 255).value_or("");
    if (p.kind == PathMatch::Kind::exact && !p.value.empty() && p.value.front() != '/') {
      r.error(v, "must start with '/'");
    }
    if (p.kind == PathMatch::Kind::regex) check_regex(r, v, p.value);
  });
  return p;
}

HttpTimeout read_http_timeout(Reader& r, const YAML::Node& n) {
  HttpTimeout out;
  MapReader m(r, n, {"perRequest", "idle"});
  m.optional("perRequest", [&](const YAML::Node& v) { out.per_request = r.duration(v); });
  m.optional("idle", [&](const YAML::Node& v) { out.idle = r.duration(v); });
  return out;
}

namespace {

void read_prefix(Reader& r, const YAML::Node& v, std::optional<std::string>& out, bool gateway) {
  out = r.string(v);
  if (!out) return;
  if (out->front() != '/') {
    r.error(v, "must start with '/'");
  } else if (gateway && (out->rfind("/aws-appmesh", 0) == 0 || out->rfind("/aws-app-mesh", 0) == 0)) {
    r.error(v, "prefixes starting /aws-appmesh and /aws-app-mesh are reserved");
  }
}

RouteAction read_action(Reader& r, const YAML::Node& n) {
  RouteAction a;
  MapReader m(r, n, {"weightedTargets"});
  m.required("weightedTargets", [&](const YAML::Node& v) {
    std::int64_t total = 0;
    r.list(v, 1, 10, [&](const YAML::Node& e, std::size_t) {
      MapReader tm(r, e, {"virtualNode", "weight", "port"});
      WeightedTarget t;
      tm.required("virtualNode", [&](const YAML::Node& x) {
        t.virtual_node = r.string(x, 1, 255).value_or("");
        t.mark = yaml::mark_of(x);
      });
      tm.required("weight", [&](const YAML::Node& x) {
        t.weight = static_cast<std::int32_t>(r.integer(x, 0, 100).value_or(1));
      });
      tm.optional("port", [&](const YAML::Node& x) {
        t.port = r.port(x);
        t.port_mark = yaml::mark_of(x);
      });
      total += t.weight;
      a.weighted_targets.push_back(std::move(t));
    });
    if (!a.weighted_targets.empty() && total == 0) {
      r.error(v, "the weights add up to 0, so no target could receive traffic");
    }
  });
  return a;
}

std::optional<RetryPolicy> read_retry_policy(Reader& r, const YAML::Node& n, Protocol kind) {
  const bool grpc = kind == Protocol::grpc;
  MapReader m(r, n, grpc ? std::initializer_list<std::string_view>{"maxRetries", "perRetryTimeout", "httpRetryEvents", "tcpRetryEvents", "grpcRetryEvents", "backoff", "budget"}
                         : std::initializer_list<std::string_view>{"maxRetries", "perRetryTimeout", "httpRetryEvents", "tcpRetryEvents", "backoff", "budget"});
  if (!m.ok()) return std::nullopt;
  RetryPolicy p;
  p.mark = yaml::mark_of(n);
  m.required("maxRetries", [&](const YAML::Node& v) { p.max_retries = r.integer(v, 0, 1000).value_or(0); });
  m.required("perRetryTimeout", [&](const YAML::Node& v) { p.per_retry_timeout = r.duration(v).value_or(Duration{}); });
  m.optional("httpRetryEvents", [&](const YAML::Node& v) {
    r.list(v, 1, 25, [&](const YAML::Node& e, std::size_t) {
      if (auto ev = r.enumeration<HttpRetryEvent>(e, {{"server-error", HttpRetryEvent::server_error},
                                                      {"gateway-error", HttpRetryEvent::gateway_error},
                                                      {"client-error", HttpRetryEvent::client_error},
                                                      {"stream-error", HttpRetryEvent::stream_error}})) {
        p.http_retry_events.push_back(*ev);
      }
    });
  });
  m.optional("tcpRetryEvents", [&](const YAML::Node& v) {
    r.list(v, 1, 1, [&](const YAML::Node& e, std::size_t) {
      if (auto ev = r.enumeration<TcpRetryEvent>(e, {{"connection-error", TcpRetryEvent::connection_error}})) {
        p.tcp_retry_events.push_back(*ev);
      }
    });
  });
  if (grpc) {
    m.optional("grpcRetryEvents", [&](const YAML::Node& v) {
      r.list(v, 1, 5, [&](const YAML::Node& e, std::size_t) {
        if (auto ev = r.enumeration<GrpcRetryEvent>(
                e, {{"cancelled", GrpcRetryEvent::cancelled},
                    {"deadline-exceeded", GrpcRetryEvent::deadline_exceeded},
                    {"internal", GrpcRetryEvent::internal},
                    {"resource-exhausted", GrpcRetryEvent::resource_exhausted},
                    {"unavailable", GrpcRetryEvent::unavailable}})) {
          p.grpc_retry_events.push_back(*ev);
        }
      });
    });
  }
  if (!m.has("httpRetryEvents") && !m.has("tcpRetryEvents") && !m.has("grpcRetryEvents")) {
    r.error(n, grpc ? "a retry policy needs at least one of httpRetryEvents, tcpRetryEvents, grpcRetryEvents"
                    : "a retry policy needs at least one of httpRetryEvents, tcpRetryEvents");
  }
  m.optional("backoff", [&](const YAML::Node& v) {
    MapReader bm(r, v, {"baseInterval", "maxInterval"});
    RetryBackoff b;
    bm.optional("baseInterval", [&](const YAML::Node& d) { b.base_interval = r.duration(d); });
    bm.optional("maxInterval", [&](const YAML::Node& d) { b.max_interval = r.duration(d); });
    if (b.base_interval && b.max_interval && b.max_interval->millis() < b.base_interval->millis()) {
      r.error(v, "maxInterval must not be shorter than baseInterval");
    }
    if (b.base_interval && b.base_interval->millis().count() == 0) {
      r.error_at_path(bm.mark_of_key("baseInterval"), r.path().str_with("baseInterval"),
                      "baseInterval must be greater than 0");
    }
    p.backoff = b;
  });
  m.optional("budget", [&](const YAML::Node& v) {
    MapReader bm(r, v, {"percent", "minConcurrent"});
    RetryBudget b;
    bm.optional("percent", [&](const YAML::Node& x) {
      if (auto pc = r.integer(x, 0, 100)) b.percent = static_cast<std::int32_t>(*pc);
    });
    bm.optional("minConcurrent", [&](const YAML::Node& x) {
      if (auto mc = r.integer(x, 0, 1000000)) b.min_concurrent = static_cast<std::int32_t>(*mc);
    });
    p.budget = b;
  });
  return p;
}

void read_http_route(Reader& r, const YAML::Node& n, HttpRoute& out, Protocol kind, Mark& port_mark) {
  MapReader m(r, n, {"match", "action", "retryPolicy", "timeout"});
  m.required("match", [&](const YAML::Node& v) {
    MapReader mm(r, v, {"prefix", "path", "headers", "method", "scheme", "queryParameters", "port"});
    auto& match = out.match;
    // The Kubernetes controller insists on one of prefix / path, but App Mesh's API took
    // a match with neither (AWS's multiple-listeners walkthrough matches on port only):
    // then every path matches (docs/compatibility.md).
    const int which = mm.one_of({"prefix", "path"}, false);
    if (which == 0) mm.optional("prefix", [&](const YAML::Node& x) { read_prefix(r, x, match.prefix, false); });
    if (which == 1) mm.optional("path", [&](const YAML::Node& x) { match.path = read_path_match(r, x); });
    mm.optional("headers", [&](const YAML::Node& x) { match.headers = read_header_matches(r, x); });
    mm.optional("method", [&](const YAML::Node& x) { match.method = read_method(r, x); });
    mm.optional("scheme", [&](const YAML::Node& x) {
      match.scheme = r.enumeration<HttpScheme>(x, {{"http", HttpScheme::http}, {"https", HttpScheme::https}});
    });
    mm.optional("queryParameters", [&](const YAML::Node& x) { match.query_parameters = read_query_parameters(r, x); });
    mm.optional("port", [&](const YAML::Node& x) {
      match.port = r.port(x);
      port_mark = yaml::mark_of(x);
    });
  });
  m.required("action", [&](const YAML::Node& v) { out.action = read_action(r, v); });
  m.optional("retryPolicy", [&](const YAML::Node& v) { out.retry_policy = read_retry_policy(r, v, kind); });
  m.optional("timeout", [&](const YAML::Node& v) { out.timeout = read_http_timeout(r, v); });
}

void read_grpc_route(Reader& r, const YAML::Node& n, GrpcRoute& out, Mark& port_mark) {
  MapReader m(r, n, {"match", "action", "retryPolicy", "timeout"});
  m.required("match", [&](const YAML::Node& v) {
    MapReader mm(r, v, {"serviceName", "methodName", "metadata", "port"});
    mm.optional("serviceName", [&](const YAML::Node& x) { out.match.service_name = r.string(x); });
    mm.optional("methodName", [&](const YAML::Node& x) {
      out.match.method_name = r.string(x, 1, 50);
      if (!mm.has("serviceName")) r.error(x, "methodName needs serviceName");
    });
    mm.optional("metadata", [&](const YAML::Node& x) { out.match.metadata = read_header_matches(r, x); });
    mm.optional("port", [&](const YAML::Node& x) {
      out.match.port = r.port(x);
      port_mark = yaml::mark_of(x);
    });
  });
  m.required("action", [&](const YAML::Node& v) { out.action = read_action(r, v); });
  m.optional("retryPolicy", [&](const YAML::Node& v) { out.retry_policy = read_retry_policy(r, v, Protocol::grpc); });
  m.optional("timeout", [&](const YAML::Node& v) { out.timeout = read_http_timeout(r, v); });
}

void read_tcp_route(Reader& r, const YAML::Node& n, TcpRoute& out, Mark& port_mark) {
  MapReader m(r, n, {"action", "match", "timeout"});
  m.required("action", [&](const YAML::Node& v) { out.action = read_action(r, v); });
  m.optional("match", [&](const YAML::Node& v) {
    MapReader mm(r, v, {"port"});
    mm.optional("port", [&](const YAML::Node& x) {
      out.match_port = r.port(x);
      port_mark = yaml::mark_of(x);
    });
  });
  m.optional("timeout", [&](const YAML::Node& v) {
    MapReader tm(r, v, {"idle"});
    TcpTimeout t;
    tm.optional("idle", [&](const YAML::Node& d) { t.idle = r.duration(d); });
    out.timeout = t;
  });
}

std::optional<HostnameMatch> read_hostname_match(Reader& r, const YAML::Node& n) {
  MapReader m(r, n, {"exact", "suffix"});
  const int which = m.one_of({"exact", "suffix"});
  if (which < 0) return std::nullopt;
  HostnameMatch h;
  h.kind = which == 0 ? HostnameMatch::Kind::exact : HostnameMatch::Kind::suffix;
  m.optional(which == 0 ? "exact" : "suffix", [&](const YAML::Node& v) { h.value = r.string(v, 1, 253).value_or(""); });
  return h;
}

std::optional<DefaultTargetHostname> read_enabled(Reader& r, const YAML::Node& n) {
  return r.enumeration<DefaultTargetHostname>(
      n, {{"ENABLED", DefaultTargetHostname::ENABLED}, {"DISABLED", DefaultTargetHostname::DISABLED}});
}

std::optional<DefaultTargetHostname> read_hostname_rewrite(Reader& r, const YAML::Node& n) {
  MapReader m(r, n, {"defaultTargetHostname"});
  std::optional<DefaultTargetHostname> out;
  m.optional("defaultTargetHostname", [&](const YAML::Node& v) { out = read_enabled(r, v); });
  return out;
}

GatewayTarget read_gateway_target(Reader& r, const YAML::Node& n) {
  GatewayTarget t;
  MapReader m(r, n, {"virtualService", "port"});
  m.required("virtualService", [&](const YAML::Node& v) {
    MapReader vm(r, v, {"virtualServiceName"});
    vm.required("virtualServiceName", [&](const YAML::Node& s) {
      t.virtual_service_name = r.string(s).value_or("");
      t.mark = yaml::mark_of(s);
    });
  });
  m.optional("port", [&](const YAML::Node& v) { t.port = r.port(v); });
  return t;
}

void read_gateway_http_route(Reader& r, const YAML::Node& n, GatewayHttpRoute& out, Mark& port_mark) {
  MapReader m(r, n, {"match", "action"});
  m.required("match", [&](const YAML::Node& v) {
    MapReader mm(r, v, {"prefix", "path", "hostname", "headers", "method", "queryParameters", "port"});
    if (!mm.ok()) return;
    mm.one_of({"prefix", "path"}, false);  // neither: every path matches, as for routes
    mm.optional("prefix", [&](const YAML::Node& x) { read_prefix(r, x, out.prefix, true); });
    mm.optional("path", [&](const YAML::Node& x) { out.path = read_path_match(r, x); });
    mm.optional("hostname", [&](const YAML::Node& x) { out.hostname = read_hostname_match(r, x); });
    mm.optional("headers", [&](const YAML::Node& x) { out.headers = read_header_matches(r, x); });
    mm.optional("method", [&](const YAML::Node& x) { out.method = read_method(r, x); });
    mm.optional("queryParameters", [&](const YAML::Node& x) { out.query_parameters = read_query_parameters(r, x); });
    mm.optional("port", [&](const YAML::Node& x) {
      out.port = r.port(x);
      port_mark = yaml::mark_of(x);
    });
  });
  m.required("action", [&](const YAML::Node& v) {
    MapReader am(r, v, {"target", "rewrite"});
    am.required("target", [&](const YAML::Node& t) { out.target = read_gateway_target(r, t); });
    am.optional("rewrite", [&](const YAML::Node& rw) {
      MapReader rm(r, rw, {"hostname", "prefix", "path"});
      rm.one_of({"prefix", "path"}, false);
      rm.optional("hostname", [&](const YAML::Node& h) { out.rewrite.hostname = read_hostname_rewrite(r, h); });
      rm.optional("prefix", [&](const YAML::Node& p) {
        MapReader pm(r, p, {"defaultPrefix", "value"});
        PrefixRewrite pr;
        pm.one_of({"defaultPrefix", "value"});
        pm.optional("defaultPrefix", [&](const YAML::Node& d) { pr.default_prefix = read_enabled(r, d); });
        pm.optional("value", [&](const YAML::Node& s) {
          pr.value = r.string(s, 1, 255);
          if (pr.value && (pr.value->front() != '/' || pr.value->back() != '/')) {
            r.error(s, "a prefix rewrite value must start and end with '/'");
          }
        });
        if (!out.prefix) r.error(p, "a prefix rewrite needs a prefix match");
        out.rewrite.prefix = pr;
      });
      rm.optional("path", [&](const YAML::Node& p) {
        MapReader pm(r, p, {"exact"});
        pm.required("exact", [&](const YAML::Node& s) { out.rewrite.path_exact = r.string(s, 1, 255); });
        if (!out.path) r.error(p, "a path rewrite needs a path match");
      });
    });
  });
}

void read_gateway_grpc_route(Reader& r, const YAML::Node& n, GatewayGrpcRoute& out, Mark& port_mark) {
  MapReader m(r, n, {"match", "action"});
  m.required("match", [&](const YAML::Node& v) {
    MapReader mm(r, v, {"serviceName", "hostname", "metadata", "port"});
    mm.optional("serviceName", [&](const YAML::Node& x) {
      out.service_name = r.string(x);
      if (out.service_name && (out.service_name->rfind("aws.app-mesh", 0) == 0 ||
                               out.service_name->rfind("aws.appmesh", 0) == 0)) {
        r.error(x, "service names starting aws.app-mesh and aws.appmesh are reserved");
      }
    });
    mm.optional("hostname", [&](const YAML::Node& x) { out.hostname = read_hostname_match(r, x); });
    mm.optional("metadata", [&](const YAML::Node& x) { out.metadata = read_header_matches(r, x); });
    mm.optional("port", [&](const YAML::Node& x) {
      out.port = r.port(x);
      port_mark = yaml::mark_of(x);
    });
  });
  m.required("action", [&](const YAML::Node& v) {
    MapReader am(r, v, {"target", "rewrite"});
    am.required("target", [&](const YAML::Node& t) { out.target = read_gateway_target(r, t); });
    am.optional("rewrite", [&](const YAML::Node& rw) {
      MapReader rm(r, rw, {"hostname"});
      rm.optional("hostname", [&](const YAML::Node& h) { out.rewrite_hostname = read_hostname_rewrite(r, h); });
    });
  });
}

}  // namespace

void read_route_spec(Reader& r, const YAML::Node& n, Route& out) {
  MapReader m(r, n, {"priority", "httpRoute", "http2Route", "grpcRoute", "tcpRoute"});
  m.optional("priority", [&](const YAML::Node& v) {
    if (auto p = r.integer(v, 0, 1000)) out.priority = static_cast<std::int32_t>(*p);
  });
  switch (m.one_of({"httpRoute", "http2Route", "grpcRoute", "tcpRoute"})) {
    case 0:
      out.kind = Protocol::http;
      m.optional("httpRoute", [&](const YAML::Node& v) { read_http_route(r, v, out.http, Protocol::http, out.match_port_mark); });
      break;
    case 1:
      out.kind = Protocol::http2;
      m.optional("http2Route", [&](const YAML::Node& v) { read_http_route(r, v, out.http, Protocol::http2, out.match_port_mark); });
      break;
    case 2:
      out.kind = Protocol::grpc;
      m.optional("grpcRoute", [&](const YAML::Node& v) { read_grpc_route(r, v, out.grpc, out.match_port_mark); });
      break;
    case 3:
      out.kind = Protocol::tcp;
      m.optional("tcpRoute", [&](const YAML::Node& v) { read_tcp_route(r, v, out.tcp, out.match_port_mark); });
      break;
    default:
      break;
  }
}

void read_gateway_route_spec(Reader& r, const YAML::Node& n, GatewayRoute& out) {
  MapReader m(r, n, {"priority", "httpRoute", "http2Route", "grpcRoute"});
  m.optional("priority", [&](const YAML::Node& v) {
    if (auto p = r.integer(v, 0, 1000)) out.priority = static_cast<std::int32_t>(*p);
  });
  switch (m.one_of({"httpRoute", "http2Route", "grpcRoute"})) {
    case 0:
      out.kind = Protocol::http;
      m.optional("httpRoute", [&](const YAML::Node& v) { read_gateway_http_route(r, v, out.http, out.match_port_mark); });
      break;
    case 1:
      out.kind = Protocol::http2;
      m.optional("http2Route", [&](const YAML::Node& v) { read_gateway_http_route(r, v, out.http, out.match_port_mark); });
      break;
    case 2:
      out.kind = Protocol::grpc;
      m.optional("grpcRoute", [&](const YAML::Node& v) { read_gateway_grpc_route(r, v, out.grpc, out.match_port_mark); });
      break;
    default:
      break;
  }
}

}  // namespace meshd::mesh::detail
