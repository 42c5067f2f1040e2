#include "mesh/config/names.hpp"

namespace meshd::mesh {

std::string_view to_string(Protocol p) {
  switch (p) {
    case Protocol::http: return "http";
    case Protocol::http2: return "http2";
    case Protocol::grpc: return "grpc";
    case Protocol::tcp: return "tcp";
  }
  return "?";
}

std::string_view route_key(Protocol p) {
  switch (p) {
    case Protocol::http: return "httpRoute";
    case Protocol::http2: return "http2Route";
    case Protocol::grpc: return "grpcRoute";
    case Protocol::tcp: return "tcpRoute";
  }
  return "?";
}

std::string_view to_string(EgressFilterType t) {
  return t == EgressFilterType::ALLOW_ALL ? "ALLOW_ALL" : "DROP_ALL";
}

std::string_view to_string(DnsResponseType t) {
  return t == DnsResponseType::ENDPOINTS ? "ENDPOINTS" : "LOADBALANCER";
}

std::string_view to_string(IpPreference p) {
  switch (p) {
    case IpPreference::IPv6_PREFERRED: return "IPv6_PREFERRED";
    case IpPreference::IPv4_PREFERRED: return "IPv4_PREFERRED";
    case IpPreference::IPv4_ONLY: return "IPv4_ONLY";
    case IpPreference::IPv6_ONLY: return "IPv6_ONLY";
  }
  return "?";
}

std::string_view to_string(HttpMethod m) {
  switch (m) {
    case HttpMethod::GET: return "GET";
    case HttpMethod::HEAD: return "HEAD";
    case HttpMethod::POST: return "POST";
    case HttpMethod::PUT: return "PUT";
    case HttpMethod::DELETE: return "DELETE";
    case HttpMethod::CONNECT: return "CONNECT";
    case HttpMethod::OPTIONS: return "OPTIONS";
    case HttpMethod::TRACE: return "TRACE";
    case HttpMethod::PATCH: return "PATCH";
  }
  return "?";
}

std::string_view to_string(LbPolicy p) {
  switch (p) {
    case LbPolicy::ROUND_ROBIN: return "ROUND_ROBIN";
    case LbPolicy::LEAST_REQUEST: return "LEAST_REQUEST";
    case LbPolicy::RANDOM: return "RANDOM";
    case LbPolicy::RING_HASH: return "RING_HASH";
  }
  return "?";
}

std::string_view to_string(TlsMode m) {
  switch (m) {
    case TlsMode::STRICT: return "STRICT";
    case TlsMode::PERMISSIVE: return "PERMISSIVE";
    case TlsMode::DISABLED: return "DISABLED";
  }
  return "?";
}

}  // namespace meshd::mesh
