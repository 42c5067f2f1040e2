#include "proxy/grpc.hpp"

#include <cstdint>

#include "proxy/http1_write.hpp"  // iequals_ascii

namespace meshd::proxy {

bool is_grpc_content_type(std::string_view content_type) {
  constexpr std::string_view kGrpc = "application/grpc";
  if (content_type.size() < kGrpc.size() || !iequals_ascii(content_type.substr(0, kGrpc.size()), kGrpc)) return false;
  // application/grpc, application/grpc+proto, application/grpc;charset=... (not
  // application/grpc-web, whose framing differs)
  return content_type.size() == kGrpc.size() || content_type[kGrpc.size()] == '+' ||
         content_type[kGrpc.size()] == ';';
}

int grpc_status(LocalReply r) {
  switch (r) {
    case LocalReply::no_route:
      return 12;  // UNIMPLEMENTED
    case LocalReply::egress_denied:
      return 7;  // PERMISSION_DENIED
    case LocalReply::rate_limited:
      return 8;  // RESOURCE_EXHAUSTED
    case LocalReply::upstream_timeout:
      return 4;  // DEADLINE_EXCEEDED
    default:
      return 14;  // UNAVAILABLE
  }
}

std::string grpc_percent_encode(std::string_view message) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(message.size());
  for (const char ch : message) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

std::optional<std::chrono::milliseconds> parse_grpc_timeout(std::string_view value) {
  if (value.size() < 2 || value.size() > 9) return std::nullopt;
  std::uint64_t n = 0;
  for (const char c : value.substr(0, value.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  // Converted per unit: the largest value, 99,999,999 H, fits in milliseconds.
  switch (value.back()) {
    case 'H':
      return std::chrono::milliseconds(n * 3600000);
    case 'M':
      return std::chrono::milliseconds(n * 60000);
    case 'S':
      return std::chrono::milliseconds(n * 1000);
    case 'm':
      return std::chrono::milliseconds(n);
    case 'u':
      return std::chrono::milliseconds((n + 999) / 1000);
    case 'n':
      return std::chrono::milliseconds((n + 999999) / 1000000);
    default:
      return std::nullopt;
  }
}

}  // namespace meshd::proxy
