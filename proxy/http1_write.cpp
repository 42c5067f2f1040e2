#include "proxy/http1_write.hpp"

#include <cstdio>

namespace meshd::proxy {

bool iequals_ascii(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if ((static_cast<unsigned char>(a[i]) | 0x20) != (static_cast<unsigned char>(b[i]) | 0x20)) return false;
  }
  return true;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

namespace {
std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
}  // namespace

HopByHop::HopByHop(const MessageHead& head) : head_(head) {
  for (const auto& f : head.fields) {
    if (!iequals_ascii(f.name, "connection")) continue;
    if (count_ == connection_.size()) {
      overflow_ = true;
      break;
    }
    connection_[count_++] = f.value;
  }
}

bool HopByHop::operator()(std::string_view name) const {
  static constexpr std::string_view fixed[] = {"connection", "keep-alive", "proxy-connection", "te",
                                               "transfer-encoding", "upgrade", "http2-settings",
                                               "content-length"};
  for (auto f : fixed) {
    if (iequals_ascii(name, f)) return true;
  }
  if (overflow_) return head_.has_token("connection", name);
  for (std::size_t i = 0; i < count_; ++i) {
    std::string_view v = connection_[i];
    while (!v.empty()) {
      const auto comma = v.find(',');
      if (iequals_ascii(trim_ows(v.substr(0, comma)), name)) return true;
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return false;
}

void build_request_head(const MessageHead& in, const UpstreamRequest& r, std::string& out) {
  out.reserve(out.size() + in.raw.size() + 128);
  out += in.method;
  out += ' ';
  out += r.path_and_query;
  out += " HTTP/1.1\r\n";
  const HopByHop hop_by_hop(in);
  bool host_done = false, xff_done = false, proto_done = false, id_seen = false;
  for (const auto& f : in.fields) {
    if (hop_by_hop(f.name) || iequals_ascii(f.name, "expect")) continue;
    out += f.name;
    out += ": ";
    if (iequals_ascii(f.name, "host")) {
      if (host_done) continue;
      out += r.host;
      host_done = true;
    } else if (iequals_ascii(f.name, "x-forwarded-for") && !xff_done) {
      out += f.value;
      if (!r.forwarded_for.empty()) {
        out += ", ";
        out += r.forwarded_for;
      }
      xff_done = true;
    } else if (iequals_ascii(f.name, "x-forwarded-proto") && !proto_done) {
      out += f.value;
      out += ", http";
      proto_done = true;
    } else {
      if (iequals_ascii(f.name, "x-request-id")) id_seen = true;
      out += f.value;
    }
    out += "\r\n";
  }
  if (!host_done) {
    out += "Host: ";
    out += r.host;
    out += "\r\n";
  }
  if (!xff_done && !r.forwarded_for.empty()) {
    out += "x-forwarded-for: ";
    out += r.forwarded_for;
    out += "\r\n";
  }
  if (!proto_done) out += "x-forwarded-proto: http\r\n";
  if (!id_seen && !r.request_id.empty()) {
    out += "x-request-id: ";
    out += r.request_id;
    out += "\r\n";
  }
  if (r.content_length) {
    out += "Content-Length: " + std::to_string(*r.content_length) + "\r\n";
  } else if (r.body) {
    out += "Transfer-Encoding: chunked\r\n";
  }
  out += "\r\n";
}

void build_response_head(const MessageHead& in, const DownstreamResponse& r, std::string& out) {
  out.reserve(out.size() + in.raw.size() + 64);
  out += "HTTP/1.1 ";
  out += std::to_string(in.status);
  out += ' ';
  out += in.reason.empty() ? reason_phrase(in.status) : in.reason;
  out += "\r\n";
  const HopByHop hop_by_hop(in);
  for (const auto& f : in.fields) {
    if (hop_by_hop(f.name)) continue;
    out += f.name;
    out += ": ";
    out += f.value;
    out += "\r\n";
  }
  switch (r.framing) {
    case DownstreamResponse::Framing::length:
      out += "Content-Length: " + std::to_string(r.content_length) + "\r\n";
      break;
    case DownstreamResponse::Framing::chunked:
      out += "Transfer-Encoding: chunked\r\n";
      break;
    default:
      break;
  }
  if (r.close) out += "Connection: close\r\n";
  out += "\r\n";
}

std::string chunk_header(std::size_t size) {
  char buf[24];
  const int n = std::snprintf(buf, sizeof buf, "%zx\r\n", size);
  return std::string(buf, static_cast<std::size_t>(n));
}

}  // namespace meshd::proxy
