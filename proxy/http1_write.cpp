#include "proxy/http1_write.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "proxy/forwarded.hpp"

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

namespace {
// Decimal digits appended without a temporary string (no allocation per head).
void append_number(std::uint64_t n, std::string& out) {
  char digits[24];
  const auto r = std::to_chars(digits, digits + sizeof digits, n);
  out.append(digits, static_cast<std::size_t>(r.ptr - digits));
}
}  // namespace

std::size_t end_to_end_fields(const MessageHead& head, bool request, std::vector<FieldView>& out) {
  out.clear();
  std::size_t framing_at = kFramingAtEnd;
  const HopByHop hop_by_hop(head);
  for (const auto& f : head.fields) {
    // "TE: trailers" stays in a request's neutral head: HTTP/2 upstreams get it (gRPC
    // needs it; SPEC §7), HTTP/1.1 ones do not (forwarded_fields drops it there).
    if (request && f.name.size() == 2 && iequals_ascii(f.name, "te") && iequals_ascii(trim_ows(f.value), "trailers")) {
      out.push_back(f);
      continue;
    }
    if (hop_by_hop(f.name) || (request && iequals_ascii(f.name, "expect"))) {
      if (framing_at == kFramingAtEnd &&
          (iequals_ascii(f.name, "content-length") || iequals_ascii(f.name, "transfer-encoding"))) {
        framing_at = out.size();
      }
      continue;
    }
    out.push_back(f);
  }
  return framing_at;
}

bool trailer_allowed(std::string_view name) {
  static constexpr std::string_view forbidden[] = {"connection", "keep-alive", "proxy-connection", "te",
                                                   "transfer-encoding", "upgrade", "http2-settings",
                                                   "content-length", "host", "trailer"};
  for (auto f : forbidden) {
    if (iequals_ascii(name, f)) return false;
  }
  return true;
}

void build_request_head(const OutgoingRequest& r, std::string& out) {
  const RequestHead& in = *r.head;
  out.reserve(out.size() + 256 + 32 * in.fields.size());
  out += in.method;
  out += ' ';
  out += r.path;
  out += " HTTP/1.1\r\n";
  forwarded_fields(
      r, false,
      [&](std::string_view name, std::string_view value, std::string_view appended) {
        out += name;
        out += ": ";
        out += value;
        if (!appended.empty()) {
          out += ", ";
          out += appended;
        }
        out += "\r\n";
      },
      [&] {
        if (r.length) {
          out += "Content-Length: ";
          append_number(*r.length, out);
          out += "\r\n";
        } else if (r.has_body) {
          out += "Transfer-Encoding: chunked\r\n";
        }
      });
  out += "\r\n";
}

namespace {
void status_line(const ResponseHead& in, std::string& out) {
  out += "HTTP/1.1 ";
  append_number(static_cast<std::uint64_t>(in.status), out);
  out += ' ';
  out += in.reason.empty() ? reason_phrase(in.status) : in.reason;
  out += "\r\n";
}
void fields(std::span<const Field> fs, std::string& out) {
  for (const auto& f : fs) {
    out += f.name;
    out += ": ";
    out += f.value;
    out += "\r\n";
  }
}
}  // namespace

void build_response_head(const ResponseHead& in, const DownstreamResponse& r, std::string& out) {
  out.reserve(out.size() + 128 + 32 * in.fields.size());
  status_line(in, out);
  auto framing = [&] {
    switch (r.framing) {
      case DownstreamResponse::Framing::length:
        out += "Content-Length: ";
        append_number(r.content_length, out);
        out += "\r\n";
        break;
      case DownstreamResponse::Framing::chunked:
        out += "Transfer-Encoding: chunked\r\n";
        break;
      default:
        break;
    }
  };
  // The framing field where the sender had its own, the others in their order.
  const std::size_t at = std::min(in.framing_at, in.fields.size());
  fields(in.fields.first(at), out);
  framing();
  fields(in.fields.subspan(at), out);
  if (r.close) out += "Connection: close\r\n";
  out += "\r\n";
}

void build_interim_head(const ResponseHead& in, std::string& out) {
  status_line(in, out);
  fields(in.fields, out);
  out += "\r\n";
}

void build_last_chunk(std::span<const Field> trailers, std::string& out) {
  out += "0\r\n";
  for (const auto& f : trailers) {
    if (!trailer_allowed(f.name)) continue;
    out += f.name;
    out += ": ";
    out += f.value;
    out += "\r\n";
  }
  out += "\r\n";
}

std::string chunk_header(std::size_t size) {
  char buf[24];
  const int n = std::snprintf(buf, sizeof buf, "%zx\r\n", size);
  return std::string(buf, static_cast<std::size_t>(n));
}

}  // namespace meshd::proxy
