// Virtual nodes and virtual gateways: listeners, TLS, discovery, backends, logging.
#include "mesh/config/loader_parts.hpp"
#include "mesh/config/access_log_format.hpp"

namespace meshd::mesh::detail {
namespace {

constexpr std::string_view kAcmReason =
    "ACM certificates need the AWS API, which meshd does not call; use file certificates";
constexpr std::string_view kSdsReason =
    "SDS secrets need a secret discovery service, which meshd does not use; use file "
    "certificates";

std::optional<SubjectAlternativeNames> read_sans(Reader& r, const YAML::Node& n) {
  MapReader m(r, n, {"match"});
  SubjectAlternativeNames out;
  m.required("match", [&](const YAML::Node& v) {
    MapReader mm(r, v, {"exact"});
    mm.required("exact", [&](const YAML::Node& list) {
      r.list(list, 1, SIZE_MAX, [&](const YAML::Node& e, std::size_t) {
        if (auto s = r.string(e, 1, 254)) out.exact.push_back(*s);
      });
    });
  });
  return out;
}

TlsFileCertificate read_file_certificate(Reader& r, const YAML::Node& n) {
  TlsFileCertificate out;
  MapReader m(r, n, {"certificateChain", "privateKey"});
  m.required("certificateChain", [&](const YAML::Node& v) {
    out.certificate_chain = r.string(v, 1, 255).value_or("");
  });
  m.required("privateKey",
             [&](const YAML::Node& v) { out.private_key = r.string(v, 1, 255).value_or(""); });
  return out;
}

TlsFileTrust read_file_trust(Reader& r, const YAML::Node& n) {
  TlsFileTrust out;
  MapReader m(r, n, {"certificateChain"});
  m.required("certificateChain", [&](const YAML::Node& s) {
    out.certificate_chain = r.string(s, 1, 255).value_or("");
  });
  return out;
}

TlsSdsRef read_sds(Reader& r, const YAML::Node& n) {
  TlsSdsRef out;
  MapReader m(r, n, {"secretName"});
  m.required("secretName", [&](const YAML::Node& v) { out.secret_name = r.string(v).value_or(""); });
  r.error(n, std::string(kSdsReason));
  return out;
}

std::optional<ListenerTls> read_listener_tls(Reader& r, const YAML::Node& n) {
  MapReader m(r, n, {"mode", "certificate", "validation"});
  if (!m.ok()) return std::nullopt;
  ListenerTls out;
  out.mark = yaml::mark_of(n);
  m.required("mode", [&](const YAML::Node& v) {
    out.mode = r.enumeration<TlsMode>(v, {{"STRICT", TlsMode::STRICT},
                                          {"PERMISSIVE", TlsMode::PERMISSIVE},
                                          {"DISABLED", TlsMode::DISABLED}})
                   .value_or(TlsMode::STRICT);
  });
  m.required("certificate", [&](const YAML::Node& v) {
    MapReader c(r, v, {"acm", "file", "sds"});
    switch (c.one_of({"acm", "file", "sds"})) {
      case 0:
        c.optional("acm", [&](const YAML::Node& a) {
          MapReader am(r, a, {"certificateArn"});
          TlsAcmCertificate acm;
          am.required("certificateArn",
                      [&](const YAML::Node& s) { acm.certificate_arn = r.string(s).value_or(""); });
          out.certificate = acm;
          r.error(a, std::string(kAcmReason));
        });
        break;
      case 1:
        c.optional("file", [&](const YAML::Node& f) { out.certificate = read_file_certificate(r, f); });
        break;
      case 2:
        c.optional("sds", [&](const YAML::Node& s) { out.certificate = read_sds(r, s); });
        break;
      default:
        break;
    }
  });
  m.optional("validation", [&](const YAML::Node& v) {
    MapReader vm(r, v, {"trust", "subjectAlternativeNames"});
    ListenerTlsValidation val;
    vm.required("trust", [&](const YAML::Node& t) {
      MapReader tm(r, t, {"file", "sds"});
      switch (tm.one_of({"file", "sds"})) {
        case 0:
          tm.optional("file", [&](const YAML::Node& f) { val.trust = read_file_trust(r, f); });
          break;
        case 1:
          tm.optional("sds", [&](const YAML::Node& s) { val.trust = read_sds(r, s); });
          break;
        default:
          break;
      }
    });
    vm.optional("subjectAlternativeNames",
                [&](const YAML::Node& s) { val.subject_alternative_names = read_sans(r, s); });
    out.validation = std::move(val);
  });
  return out;
}

std::optional<ClientPolicy> read_client_policy(Reader& r, const YAML::Node& n) {
  MapReader m(r, n, {"tls"});
  if (!m.ok()) return std::nullopt;
  ClientPolicy out;
  m.optional("tls", [&](const YAML::Node& t) {
    MapReader tm(r, t, {"enforce", "ports", "certificate", "validation"});
    if (!tm.ok()) return;
    ClientPolicyTls tls;
    tls.mark = yaml::mark_of(t);
    tm.optional("enforce", [&](const YAML::Node& v) { tls.enforce = r.boolean(v); });
    tm.optional("ports", [&](const YAML::Node& v) {
      r.list(v, 1, SIZE_MAX, [&](const YAML::Node& p, std::size_t) {
        if (auto port = r.port(p)) tls.ports.push_back(*port);
      });
    });
    tm.optional("certificate", [&](const YAML::Node& v) {
      MapReader c(r, v, {"file", "sds"});
      switch (c.one_of({"file", "sds"})) {
        case 0:
          c.optional("file", [&](const YAML::Node& f) { tls.certificate = read_file_certificate(r, f); });
          break;
        case 1:
          c.optional("sds", [&](const YAML::Node& s) { tls.certificate = read_sds(r, s); });
          break;
        default:
          break;
      }
    });
    tm.required("validation", [&](const YAML::Node& v) {
      MapReader vm(r, v, {"trust", "subjectAlternativeNames"});
      vm.required("trust", [&](const YAML::Node& tr) {
        MapReader trm(r, tr, {"acm", "file", "sds"});
        switch (trm.one_of({"acm", "file", "sds"})) {
          case 0:
            trm.optional("acm", [&](const YAML::Node& a) {
              MapReader am(r, a, {"certificateAuthorityArns"});
              TlsAcmTrust acm;
              am.required("certificateAuthorityArns", [&](const YAML::Node& l) {
                r.list(l, 1, 3, [&](const YAML::Node& e, std::size_t) {
                  if (auto s = r.string(e)) acm.certificate_authority_arns.push_back(*s);
                });
              });
              tls.validation.trust = acm;
              r.error(a, "ACM Private CA trust needs the AWS API, which meshd does not call; "
                         "use a file trust (certificateChain)");
            });
            break;
          case 1:
            trm.optional("file", [&](const YAML::Node& f) { tls.validation.trust = read_file_trust(r, f); });
            break;
          case 2:
            trm.optional("sds", [&](const YAML::Node& s) { tls.validation.trust = read_sds(r, s); });
            break;
          default:
            break;
        }
      });
      vm.optional("subjectAlternativeNames", [&](const YAML::Node& s) {
        tls.validation.subject_alternative_names = read_sans(r, s);
      });
    });
    out.tls = std::move(tls);
  });
  return out;
}

std::optional<HealthCheck> read_health_check(Reader& r, const YAML::Node& n, bool allow_tcp) {
  MapReader m(r, n,
              {"protocol", "port", "path", "healthyThreshold", "unhealthyThreshold",
               "intervalMillis", "timeoutMillis"});
  if (!m.ok()) return std::nullopt;
  HealthCheck hc;
  hc.mark = yaml::mark_of(n);
  m.required("protocol",
             [&](const YAML::Node& v) { hc.protocol = read_protocol(r, v, allow_tcp).value_or(Protocol::http); });
  m.optional("port", [&](const YAML::Node& v) { hc.port = r.port(v); });
  m.optional("path", [&](const YAML::Node& v) {
    hc.path = r.string(v);
    if (hc.path && hc.path->front() != '/') r.error(v, "must start with '/'");
  });
  if (m.has("path") && hc.protocol != Protocol::http && hc.protocol != Protocol::http2) {
    r.error_at_path(m.mark_of_key("path"), r.path().str_with("path"),
                    "path applies only to http and http2 health checks");
  }
  auto int_field = [&](std::string_view key, std::int64_t lo, std::int64_t hi, auto& dst) {
    m.required(key, [&](const YAML::Node& v) {
      if (auto x = r.integer(v, lo, hi)) dst = static_cast<std::remove_reference_t<decltype(dst)>>(*x);
    });
  };
  int_field("healthyThreshold", 2, 10, hc.healthy_threshold);
  int_field("unhealthyThreshold", 2, 10, hc.unhealthy_threshold);
  int_field("intervalMillis", 5000, 300000, hc.interval_millis);
  int_field("timeoutMillis", 2000, 60000, hc.timeout_millis);
  return hc;
}

std::optional<ConnectionPool> read_connection_pool(Reader& r, const YAML::Node& n, bool allow_tcp) {
  MapReader m(r, n, {"tcp", "http", "http2", "grpc"});
  if (!m.ok()) return std::nullopt;
  ConnectionPool out;
  out.mark = yaml::mark_of(n);
  auto max_field = [&](const YAML::Node& v, std::string_view key, std::int32_t& dst) {
    MapReader pm(r, v, {key});
    pm.required(key, [&](const YAML::Node& x) {
      dst = static_cast<std::int32_t>(r.integer(x, 1, INT32_MAX).value_or(1));
    });
  };
  switch (m.one_of({"tcp", "http", "http2", "grpc"})) {
    case 0:
      if (!allow_tcp) {
        r.error_at_path(m.mark_of_key("tcp"), r.path().str_with("tcp"),
                        "a virtual gateway has no tcp connection pool");
      }
      m.optional("tcp", [&](const YAML::Node& v) {
        TcpPool p;
        max_field(v, "maxConnections", p.max_connections);
        out.kind = p;
      });
      break;
    case 1:
      m.optional("http", [&](const YAML::Node& v) {
        HttpPool p;
        MapReader pm(r, v, {"maxConnections", "maxPendingRequests"});
        pm.required("maxConnections", [&](const YAML::Node& x) {
          p.max_connections = static_cast<std::int32_t>(r.integer(x, 1, INT32_MAX).value_or(1));
        });
        pm.optional("maxPendingRequests", [&](const YAML::Node& x) {
          if (auto mp = r.integer(x, 1, INT32_MAX)) p.max_pending_requests = static_cast<std::int32_t>(*mp);
        });
        out.kind = p;
      });
      break;
    case 2:
      m.optional("http2", [&](const YAML::Node& v) {
        Http2Pool p;
        max_field(v, "maxRequests", p.max_requests);
        out.kind = p;
      });
      break;
    case 3:
      m.optional("grpc", [&](const YAML::Node& v) {
        GrpcPool p;
        max_field(v, "maxRequests", p.max_requests);
        out.kind = p;
      });
      break;
    default:
      return std::nullopt;
  }
  return out;
}

std::optional<ListenerTimeout> read_listener_timeout(Reader& r, const YAML::Node& n) {
  MapReader m(r, n, {"http", "http2", "grpc", "tcp"});
  if (!m.ok()) return std::nullopt;
  ListenerTimeout out;
  out.mark = yaml::mark_of(n);
  const int which = m.one_of({"http", "http2", "grpc", "tcp"});
  if (which < 0) return std::nullopt;
  static constexpr Protocol kinds[] = {Protocol::http, Protocol::http2, Protocol::grpc, Protocol::tcp};
  static constexpr std::string_view keys[] = {"http", "http2", "grpc", "tcp"};
  out.kind = kinds[which];
  m.optional(keys[which], [&](const YAML::Node& v) {
    if (out.kind == Protocol::tcp) {
      MapReader tm(r, v, {"idle"});
      tm.optional("idle", [&](const YAML::Node& d) { out.tcp.idle = r.duration(d); });
    } else {
      out.http = read_http_timeout(r, v);
    }
  });
  return out;
}

std::optional<RateLimit> read_rate_limit(Reader& r, const YAML::Node& n) {
  MapReader m(r, n, {"requestsPerUnit", "unit"});
  if (!m.ok()) return std::nullopt;
  RateLimit out;
  out.mark = yaml::mark_of(n);
  m.required("requestsPerUnit", [&](const YAML::Node& v) {
    out.requests_per_unit = r.integer(v, 1, 1000000000).value_or(1);
  });
  m.required("unit", [&](const YAML::Node& v) {
    out.unit = r.enumeration<RateUnit>(v, {{"SECOND", RateUnit::SECOND}, {"MINUTE", RateUnit::MINUTE}})
                   .value_or(RateUnit::SECOND);
  });
  return out;
}

Listener read_listener(Reader& r, const YAML::Node& n) {
  Listener l;
  l.mark = yaml::mark_of(n);
  MapReader m(r, n,
              {"portMapping", "tls", "healthCheck", "outlierDetection", "connectionPool", "timeout",
               "rateLimit"});
  m.required("portMapping", [&](const YAML::Node& v) {
    if (auto pm = read_port_mapping(r, v)) l.port_mapping = *pm;
  });
  m.optional("tls", [&](const YAML::Node& v) { l.tls = read_listener_tls(r, v); });
  m.optional("healthCheck", [&](const YAML::Node& v) { l.health_check = read_health_check(r, v, true); });
  m.optional("outlierDetection", [&](const YAML::Node& v) {
    MapReader om(r, v, {"maxServerErrors", "interval", "baseEjectionDuration", "maxEjectionPercent"});
    if (!om.ok()) return;
    OutlierDetection od;
    od.mark = yaml::mark_of(v);
    om.required("maxServerErrors",
                [&](const YAML::Node& x) { od.max_server_errors = r.integer(x, 1, INT64_MAX).value_or(1); });
    om.required("interval", [&](const YAML::Node& x) { od.interval = r.duration(x).value_or(Duration{}); });
    om.required("baseEjectionDuration",
                [&](const YAML::Node& x) { od.base_ejection_duration = r.duration(x).value_or(Duration{}); });
    om.required("maxEjectionPercent", [&](const YAML::Node& x) {
      od.max_ejection_percent = static_cast<std::int32_t>(r.integer(x, 0, 100).value_or(0));
    });
    l.outlier_detection = od;
  });
  m.optional("connectionPool", [&](const YAML::Node& v) { l.connection_pool = read_connection_pool(r, v, true); });
  m.optional("timeout", [&](const YAML::Node& v) { l.timeout = read_listener_timeout(r, v); });
  m.optional("rateLimit", [&](const YAML::Node& v) { l.rate_limit = read_rate_limit(r, v); });
  return l;
}

std::optional<ServiceDiscovery> read_service_discovery(Reader& r, const YAML::Node& n) {
  MapReader m(r, n, {"dns", "awsCloudMap", "static"});
  std::optional<ServiceDiscovery> out;
  switch (m.one_of({"dns", "awsCloudMap", "static"})) {
    case 0:
      m.optional("dns", [&](const YAML::Node& v) {
        MapReader dm(r, v, {"hostname", "responseType", "ipPreference"});
        DnsDiscovery d;
        dm.required("hostname", [&](const YAML::Node& h) { d.hostname = r.string(h).value_or(""); });
        dm.optional("responseType", [&](const YAML::Node& t) {
          d.response_type = r.enumeration<DnsResponseType>(
              t, {{"LOADBALANCER", DnsResponseType::LOADBALANCER},
                  {"ENDPOINTS", DnsResponseType::ENDPOINTS}});
        });
        dm.optional("ipPreference", [&](const YAML::Node& p) { d.ip_preference = read_ip_preference(r, p); });
        out = d;
      });
      break;
    case 1:
      m.optional("awsCloudMap", [&](const YAML::Node& v) {
        MapReader cm(r, v, {"namespaceName", "serviceName", "attributes", "ipPreference"});
        CloudMapDiscovery c;
        cm.required("namespaceName",
                    [&](const YAML::Node& s) { c.namespace_name = r.string(s, 1, 1024).value_or(""); });
        cm.required("serviceName",
                    [&](const YAML::Node& s) { c.service_name = r.string(s, 1, 1024).value_or(""); });
        cm.optional("attributes", [&](const YAML::Node& a) {
          r.list(a, 1, SIZE_MAX, [&](const YAML::Node& e, std::size_t) {
            MapReader am(r, e, {"key", "value"});
            CloudMapAttribute attr;
            am.required("key", [&](const YAML::Node& s) { attr.key = r.string(s, 1, 255).value_or(""); });
            am.required("value", [&](const YAML::Node& s) { attr.value = r.string(s, 1, 1024).value_or(""); });
            c.attributes.push_back(attr);
          });
          r.error(a, "Cloud Map attributes need the Cloud Map API, which meshd does not call; "
                     "meshd resolves <serviceName>.<namespaceName> through DNS, so give each "
                     "attribute set its own Cloud Map service instead");
        });
        cm.optional("ipPreference", [&](const YAML::Node& p) { c.ip_preference = read_ip_preference(r, p); });
        out = c;
      });
      break;
    case 2:
      m.optional("static", [&](const YAML::Node& v) {
        MapReader sm(r, v, {"endpoints"});
        StaticDiscovery s;
        sm.required("endpoints", [&](const YAML::Node& list) {
          r.list(list, 1, SIZE_MAX, [&](const YAML::Node& e, std::size_t) {
            MapReader em(r, e, {"address", "port"});
            StaticEndpoint ep;
            em.required("address", [&](const YAML::Node& a) {
              ep.address = r.string(a).value_or("");
              ep.mark = yaml::mark_of(a);
            });
            em.optional("port", [&](const YAML::Node& p) { ep.port = r.port(p); });
            s.endpoints.push_back(ep);
          });
        });
        out = s;
      });
      break;
    default:
      break;
  }
  return out;
}

// An Envoy format string that meshd cannot render is an error, as Envoy rejected it.
void check_log_format(Reader& r, const YAML::Node& at, const std::string& text) {
  std::string error;
  if (!text.empty() && !parse_log_template(text, error)) r.error(at, error);
}

std::optional<Logging> read_logging(Reader& r, const YAML::Node& n) {
  MapReader m(r, n, {"accessLog"});
  Logging out;
  m.optional("accessLog", [&](const YAML::Node& v) {
    MapReader am(r, v, {"file"});
    am.required("file", [&](const YAML::Node& f) {
      MapReader fm(r, f, {"path", "format"});
      AccessLog log;
      fm.required("path", [&](const YAML::Node& p) { log.path = r.string(p, 1, 255).value_or(""); });
      fm.optional("format", [&](const YAML::Node& fmt) {
        MapReader fmm(r, fmt, {"json", "text"});
        AccessLogFormat format;
        switch (fmm.one_of({"json", "text"})) {
          case 0:
            fmm.optional("json", [&](const YAML::Node& list) {
              std::vector<JsonFormatEntry> entries;
              r.list(list, 1, SIZE_MAX, [&](const YAML::Node& e, std::size_t) {
                MapReader em(r, e, {"key", "value"});
                JsonFormatEntry je;
                em.required("key", [&](const YAML::Node& s) { je.key = r.string(s, 1, 100).value_or(""); });
                em.required("value", [&](const YAML::Node& s) {
                  je.value = r.string(s, 1, 100).value_or("");
                  check_log_format(r, s, je.value);
                });
                entries.push_back(je);
              });
              format.kind = std::move(entries);
            });
            break;
          case 1:
            fmm.optional("text", [&](const YAML::Node& s) {
              auto text = r.string(s, 1, 1000).value_or("");
              check_log_format(r, s, text);
              format.kind = std::move(text);
            });
            break;
          default:
            break;
        }
        log.format = std::move(format);
      });
      out.access_log = std::move(log);
    });
  });
  return out;
}

std::optional<ClientPolicy> read_backend_defaults(Reader& r, const YAML::Node& n) {
  MapReader m(r, n, {"clientPolicy"});
  std::optional<ClientPolicy> out;
  m.optional("clientPolicy", [&](const YAML::Node& v) { out = read_client_policy(r, v); });
  return out;
}

}  // namespace

void read_virtual_node_spec(Reader& r, const YAML::Node& n, VirtualNodeSpec& out) {
  MapReader m(r, n,
              {"listeners", "serviceDiscovery", "backends", "backendDefaults", "logging",
               "loadBalancing"});
  m.optional("listeners", [&](const YAML::Node& v) {
    r.list(v, 1, SIZE_MAX, [&](const YAML::Node& e, std::size_t) { out.listeners.push_back(read_listener(r, e)); });
  });
  m.optional("serviceDiscovery", [&](const YAML::Node& v) { out.service_discovery = read_service_discovery(r, v); });
  m.optional("backends", [&](const YAML::Node& v) {
    r.list(v, 1, SIZE_MAX, [&](const YAML::Node& e, std::size_t) {
      MapReader bm(r, e, {"virtualService"});
      bm.required("virtualService", [&](const YAML::Node& vs) {
        MapReader vm(r, vs, {"virtualServiceName", "clientPolicy"});
        Backend b;
        vm.required("virtualServiceName", [&](const YAML::Node& s) {
          b.virtual_service_name = r.string(s).value_or("");
          b.mark = yaml::mark_of(s);
        });
        vm.optional("clientPolicy", [&](const YAML::Node& c) { b.client_policy = read_client_policy(r, c); });
        out.backends.push_back(std::move(b));
      });
    });
  });
  m.optional("backendDefaults", [&](const YAML::Node& v) { out.backend_defaults = read_backend_defaults(r, v); });
  m.optional("logging", [&](const YAML::Node& v) { out.logging = read_logging(r, v); });
  m.optional("loadBalancing", [&](const YAML::Node& v) {
    MapReader lm(r, v, {"policy", "hashOn"});
    if (!lm.ok()) return;
    LoadBalancing lb;
    lb.mark = yaml::mark_of(v);
    lm.optional("policy", [&](const YAML::Node& p) {
      lb.policy = r.enumeration<LbPolicy>(p, {{"ROUND_ROBIN", LbPolicy::ROUND_ROBIN},
                                              {"LEAST_REQUEST", LbPolicy::LEAST_REQUEST},
                                              {"RANDOM", LbPolicy::RANDOM},
                                              {"RING_HASH", LbPolicy::RING_HASH}})
                      .value_or(LbPolicy::ROUND_ROBIN);
    });
    lm.optional("hashOn", [&](const YAML::Node& h) {
      MapReader hm(r, h, {"header"});
      hm.required("header", [&](const YAML::Node& s) { lb.hash_on_header = r.string(s, 1, 255); });
      if (lb.policy != LbPolicy::RING_HASH) r.error(h, "hashOn applies only to the RING_HASH policy");
    });
    if (lb.policy == LbPolicy::RING_HASH && !lm.has("hashOn")) {
      r.error_at_path(yaml::mark_of(v), r.path().str_with("hashOn"), "RING_HASH needs hashOn: {header: NAME}");
    }
    out.load_balancing = lb;
  });
}

void read_virtual_gateway_spec(Reader& r, const YAML::Node& n, VirtualGateway& out) {
  MapReader m(r, n, {"listeners", "logging", "backendDefaults"});
  m.required("listeners", [&](const YAML::Node& v) {
    r.list(v, 1, SIZE_MAX, [&](const YAML::Node& e, std::size_t) {
      MapReader lm(r, e, {"portMapping", "tls", "healthCheck", "connectionPool"});
      GatewayListener l;
      l.mark = yaml::mark_of(e);
      lm.required("portMapping", [&](const YAML::Node& p) {
        if (auto pm = read_port_mapping(r, p, false)) l.port_mapping = *pm;
      });
      lm.optional("tls", [&](const YAML::Node& t) { l.tls = read_listener_tls(r, t); });
      lm.optional("healthCheck", [&](const YAML::Node& h) { l.health_check = read_health_check(r, h, false); });
      lm.optional("connectionPool", [&](const YAML::Node& c) { l.connection_pool = read_connection_pool(r, c, false); });
      out.listeners.push_back(std::move(l));
    });
  });
  m.optional("logging", [&](const YAML::Node& v) { out.logging = read_logging(r, v); });
  m.optional("backendDefaults", [&](const YAML::Node& v) { out.backend_defaults = read_backend_defaults(r, v); });
}

}  // namespace meshd::mesh::detail
