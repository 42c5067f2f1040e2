#pragma once
// The mesh file as typed data: App Mesh's seven resources (API version 2019-01-25)
// with every field of ../shared/reference/appmesh-api.md §1, plus meshd's extensions
// (SPEC §1). Plain structs, filled by the loader (loader.hpp) and checked by it; the
// defaults App Mesh applies are applied when a snapshot is compiled (snapshot.hpp),
// so a dump of the model shows what the user wrote.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace meshd::mesh {

// Where a value stood in the file (1-based; 0 = unknown). Kept on the fields that
// cross-reference checks and `meshd run` point at after loading.
struct Mark {
  std::uint32_t line = 0;
  std::uint32_t column = 0;
};

enum class DurationUnit { s, ms };
struct Duration {
  std::int64_t value = 0;
  DurationUnit unit = DurationUnit::ms;
  std::chrono::milliseconds millis() const {
    return unit == DurationUnit::s ? std::chrono::milliseconds(value * 1000)
                                   : std::chrono::milliseconds(value);
  }
};

enum class Protocol { http, http2, grpc, tcp };
enum class EgressFilterType { ALLOW_ALL, DROP_ALL };
enum class IpPreference { IPv6_PREFERRED, IPv4_PREFERRED, IPv4_ONLY, IPv6_ONLY };
enum class DnsResponseType { LOADBALANCER, ENDPOINTS };
enum class TlsMode { STRICT, PERMISSIVE, DISABLED };
enum class HttpMethod { GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH };
enum class HttpScheme { http, https };
enum class LbPolicy { ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH };
enum class RateUnit { SECOND, MINUTE };
enum class HttpRetryEvent { server_error, gateway_error, client_error, stream_error };
enum class TcpRetryEvent { connection_error };
enum class GrpcRetryEvent { cancelled, deadline_exceeded, internal, resource_exhausted, unavailable };
enum class DefaultTargetHostname { ENABLED, DISABLED };

struct PortMapping {
  std::int32_t port = 0;
  Protocol protocol = Protocol::http;
};

// ---- Mesh -------------------------------------------------------------------
struct MeshSpec {
  std::optional<EgressFilterType> egress_filter;  // unset: DROP_ALL
  std::optional<IpPreference> ip_preference;
};
struct Mesh {
  std::string name;
  MeshSpec spec;
};

// ---- TLS (listener and client policy) ---------------------------------------
struct TlsFileCertificate {
  std::string certificate_chain;
  std::string private_key;
};
struct TlsAcmCertificate {
  std::string certificate_arn;
};
struct TlsSdsRef {
  std::string secret_name;
};
using ListenerCertificate = std::variant<TlsAcmCertificate, TlsFileCertificate, TlsSdsRef>;
using ClientCertificate = std::variant<TlsFileCertificate, TlsSdsRef>;

struct TlsFileTrust {
  std::string certificate_chain;
};
struct TlsAcmTrust {
  std::vector<std::string> certificate_authority_arns;
};
using ListenerTrust = std::variant<TlsFileTrust, TlsSdsRef>;
using ClientTrust = std::variant<TlsAcmTrust, TlsFileTrust, TlsSdsRef>;

struct SubjectAlternativeNames {
  std::vector<std::string> exact;
};
struct ListenerTlsValidation {
  ListenerTrust trust;
  std::optional<SubjectAlternativeNames> subject_alternative_names;
};
struct ListenerTls {
  TlsMode mode = TlsMode::STRICT;
  ListenerCertificate certificate;
  std::optional<ListenerTlsValidation> validation;
  Mark mark;
};
struct ClientTlsValidation {
  ClientTrust trust;
  std::optional<SubjectAlternativeNames> subject_alternative_names;
};
struct ClientPolicyTls {
  std::optional<bool> enforce;  // default true
  std::vector<std::int32_t> ports;
  std::optional<ClientCertificate> certificate;
  ClientTlsValidation validation;
  Mark mark;
};
struct ClientPolicy {
  std::optional<ClientPolicyTls> tls;
};

// ---- Listener pieces ----------------------------------------------------------
struct HealthCheck {
  Protocol protocol = Protocol::http;
  std::optional<std::int32_t> port;
  std::optional<std::string> path;
  std::int32_t healthy_threshold = 0;
  std::int32_t unhealthy_threshold = 0;
  std::int64_t interval_millis = 0;
  std::int64_t timeout_millis = 0;
  Mark mark;
};
struct OutlierDetection {
  std::int64_t max_server_errors = 0;
  Duration interval;
  Duration base_ejection_duration;
  std::int32_t max_ejection_percent = 0;
  Mark mark;
};
struct TcpPool {
  std::int32_t max_connections = 0;
};
struct HttpPool {
  std::int32_t max_connections = 0;
  std::optional<std::int32_t> max_pending_requests;  // default 2147483647
};
struct Http2Pool {
  std::int32_t max_requests = 0;
};
struct GrpcPool {
  std::int32_t max_requests = 0;
};
struct ConnectionPool {
  std::variant<TcpPool, HttpPool, Http2Pool, GrpcPool> kind;
  Mark mark;
};
struct HttpTimeout {  // http, http2 and grpc listener timeouts, and route timeouts
  std::optional<Duration> per_request;
  std::optional<Duration> idle;
};
struct TcpTimeout {
  std::optional<Duration> idle;
};
struct ListenerTimeout {
  Protocol kind = Protocol::http;  // which member of the union was given
  HttpTimeout http;                // http, http2, grpc
  TcpTimeout tcp;
  Mark mark;
};
struct RateLimit {  // extension
  std::int64_t requests_per_unit = 0;
  RateUnit unit = RateUnit::SECOND;
  Mark mark;
};

struct Listener {
  PortMapping port_mapping;
  Mark mark;
  std::optional<ListenerTls> tls;
  std::optional<HealthCheck> health_check;
  std::optional<OutlierDetection> outlier_detection;
  std::optional<ConnectionPool> connection_pool;
  std::optional<ListenerTimeout> timeout;
  std::optional<RateLimit> rate_limit;
};

// ---- Virtual node ---------------------------------------------------------------
struct DnsDiscovery {
  std::string hostname;
  std::optional<DnsResponseType> response_type;  // default LOADBALANCER
  std::optional<IpPreference> ip_preference;
};
struct CloudMapAttribute {
  std::string key;
  std::string value;
};
struct CloudMapDiscovery {
  std::string namespace_name;
  std::string service_name;
  std::vector<CloudMapAttribute> attributes;
  std::optional<IpPreference> ip_preference;
};
struct StaticEndpoint {  // extension
  std::string address;
  Mark mark;  // of address
  std::optional<std::int32_t> port;  // default: the listener's port
};
struct StaticDiscovery {
  std::vector<StaticEndpoint> endpoints;
};
using ServiceDiscovery = std::variant<DnsDiscovery, CloudMapDiscovery, StaticDiscovery>;

struct Backend {
  std::string virtual_service_name;
  std::optional<ClientPolicy> client_policy;
  Mark mark;  // of virtualServiceName
};
struct JsonFormatEntry {
  std::string key;
  std::string value;
};
struct AccessLogFormat {
  std::variant<std::vector<JsonFormatEntry>, std::string> kind;  // json or text
};
struct AccessLog {
  std::string path;
  std::optional<AccessLogFormat> format;
};
struct Logging {
  std::optional<AccessLog> access_log;
};
struct LoadBalancing {  // extension
  LbPolicy policy = LbPolicy::ROUND_ROBIN;
  std::optional<std::string> hash_on_header;
  Mark mark;
};

struct VirtualNodeSpec {
  std::vector<Listener> listeners;
  std::optional<ServiceDiscovery> service_discovery;
  std::vector<Backend> backends;
  std::optional<ClientPolicy> backend_defaults;
  std::optional<Logging> logging;
  std::optional<LoadBalancing> load_balancing;
};
struct VirtualNode {
  std::string name;
  VirtualNodeSpec spec;
  Mark mark;       // of name
  Mark spec_mark;  // of spec
};

// ---- Virtual service and router ---------------------------------------------------
struct VirtualServiceProvider {
  enum class Kind { virtual_node, virtual_router } kind = Kind::virtual_node;
  std::string name;
  Mark mark;  // of the name
};
struct VirtualService {
  std::string name;
  std::optional<VirtualServiceProvider> provider;
  Mark mark;
};
struct VirtualRouter {
  std::string name;
  std::vector<PortMapping> listeners;
  std::vector<Mark> listener_marks;
  Mark mark;
};

// ---- Routes ---------------------------------------------------------------------------
struct Range {
  std::int64_t start = 0;
  std::int64_t end = 0;
};
struct HeaderMatchMethod {
  enum class Kind { exact, prefix, suffix, regex, range } kind = Kind::exact;
  std::string value;  // exact/prefix/suffix/regex
  Range range;
};
struct HeaderMatch {  // also gRPC metadata
  std::string name;
  bool invert = false;
  std::optional<HeaderMatchMethod> match;  // absent: presence
  Mark mark;                                // of the match value (for regex errors)
};
struct PathMatch {
  enum class Kind { exact, regex } kind = Kind::exact;
  std::string value;
  Mark mark;
};
struct QueryParameterMatch {
  std::string name;
  std::optional<std::string> exact;  // absent: presence
};
struct WeightedTarget {
  std::string virtual_node;
  std::int32_t weight = 0;
  std::optional<std::int32_t> port;
  Mark mark;       // of virtualNode
  Mark port_mark;  // of port
};
struct RouteAction {
  std::vector<WeightedTarget> weighted_targets;
};
struct RetryBackoff {  // extension
  std::optional<Duration> base_interval;
  std::optional<Duration> max_interval;
};
struct RetryBudget {  // extension
  std::optional<std::int32_t> percent;
  std::optional<std::int32_t> min_concurrent;
};
struct RetryPolicy {
  std::int64_t max_retries = 0;
  Duration per_retry_timeout;
  std::vector<HttpRetryEvent> http_retry_events;
  std::vector<TcpRetryEvent> tcp_retry_events;
  std::vector<GrpcRetryEvent> grpc_retry_events;
  std::optional<RetryBackoff> backoff;
  std::optional<RetryBudget> budget;
  Mark mark;
};
struct HttpRouteMatch {
  std::optional<std::string> prefix;
  std::optional<PathMatch> path;
  std::vector<HeaderMatch> headers;
  std::optional<HttpMethod> method;
  std::optional<HttpScheme> scheme;
  std::vector<QueryParameterMatch> query_parameters;
  std::optional<std::int32_t> port;
};
struct HttpRoute {  // httpRoute and http2Route
  HttpRouteMatch match;
  RouteAction action;
  std::optional<RetryPolicy> retry_policy;
  std::optional<HttpTimeout> timeout;
};
struct GrpcRouteMatch {
  std::optional<std::string> service_name;
  std::optional<std::string> method_name;
  std::vector<HeaderMatch> metadata;
  std::optional<std::int32_t> port;
};
struct GrpcRoute {
  GrpcRouteMatch match;
  RouteAction action;
  std::optional<RetryPolicy> retry_policy;
  std::optional<HttpTimeout> timeout;
};
struct TcpRoute {
  std::optional<std::int32_t> match_port;
  RouteAction action;
  std::optional<TcpTimeout> timeout;
};
struct Route {
  std::string name;
  std::string virtual_router_name;
  std::optional<std::int32_t> priority;
  // Which of httpRoute / http2Route / grpcRoute / tcpRoute was given.
  Protocol kind = Protocol::http;
  HttpRoute http;  // httpRoute or http2Route
  GrpcRoute grpc;
  TcpRoute tcp;
  Mark mark;             // of name
  Mark router_mark;      // of virtualRouterName
  Mark match_port_mark;  // of match.port
  std::optional<std::int32_t> match_port() const {
    return kind == Protocol::tcp ? tcp.match_port : kind == Protocol::grpc ? grpc.match.port : http.match.port;
  }
  const RouteAction& action() const {
    return kind == Protocol::tcp ? tcp.action : kind == Protocol::grpc ? grpc.action : http.action;
  }
};

// ---- Virtual gateway and gateway routes -------------------------------------------------
struct GatewayListener {
  PortMapping port_mapping;
  Mark mark;
  std::optional<ListenerTls> tls;
  std::optional<HealthCheck> health_check;
  std::optional<ConnectionPool> connection_pool;
};
struct VirtualGateway {
  std::string name;
  std::vector<GatewayListener> listeners;
  std::optional<Logging> logging;
  std::optional<ClientPolicy> backend_defaults;
  Mark mark;
};
struct HostnameMatch {
  enum class Kind { exact, suffix } kind = Kind::exact;
  std::string value;
};
struct PrefixRewrite {
  std::optional<DefaultTargetHostname> default_prefix;  // ENABLED / DISABLED
  std::optional<std::string> value;
};
struct GatewayRewrite {
  std::optional<DefaultTargetHostname> hostname;
  std::optional<PrefixRewrite> prefix;
  std::optional<std::string> path_exact;
};
struct GatewayTarget {
  std::string virtual_service_name;
  std::optional<std::int32_t> port;
  Mark mark;
};
struct GatewayHttpRoute {  // httpRoute and http2Route
  std::optional<std::string> prefix;
  std::optional<PathMatch> path;
  std::optional<HostnameMatch> hostname;
  std::vector<HeaderMatch> headers;
  std::optional<HttpMethod> method;
  std::vector<QueryParameterMatch> query_parameters;
  std::optional<std::int32_t> port;
  GatewayTarget target;
  GatewayRewrite rewrite;
};
struct GatewayGrpcRoute {
  std::optional<std::string> service_name;
  std::optional<HostnameMatch> hostname;
  std::vector<HeaderMatch> metadata;
  std::optional<std::int32_t> port;
  GatewayTarget target;
  std::optional<DefaultTargetHostname> rewrite_hostname;
};
struct GatewayRoute {
  std::string name;
  std::string virtual_gateway_name;
  std::optional<std::int32_t> priority;
  Protocol kind = Protocol::http;  // http, http2 or grpc
  GatewayHttpRoute http;
  GatewayGrpcRoute grpc;
  Mark mark;  // of name
  Mark gateway_mark;
  Mark match_port_mark;
  std::optional<std::int32_t> match_port() const { return kind == Protocol::grpc ? grpc.port : http.port; }
  const GatewayTarget& target() const { return kind == Protocol::grpc ? grpc.target : http.target; }
};

// ---- The whole file -----------------------------------------------------------------------
struct MeshConfig {
  Mesh mesh;
  std::vector<VirtualNode> virtual_nodes;
  std::vector<VirtualService> virtual_services;
  std::vector<VirtualRouter> virtual_routers;
  std::vector<Route> routes;
  std::vector<VirtualGateway> virtual_gateways;
  std::vector<GatewayRoute> gateway_routes;

  const VirtualNode* find_node(std::string_view name) const;
  const VirtualService* find_service(std::string_view name) const;
  const VirtualRouter* find_router(std::string_view name) const;
  const VirtualGateway* find_gateway(std::string_view name) const;
};

}  // namespace meshd::mesh
