#include "mesh/compiled/request_view.hpp"

#include <vector>

#include "net/address.hpp"

namespace meshd::mesh {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

namespace {

// Whether `path` is already what normalization produces: it starts with '/', has no
// empty segment ("//") and no "." or ".." segment. Most request paths are, and are
// then copied without splitting them into segments.
bool already_normal(std::string_view path) {
  if (path.empty() || path.front() != '/') return false;
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path[i] != '/' || i + 1 == path.size()) continue;
    const char next = path[i + 1];
    if (next == '/') return false;
    if (next == '.') {
      const std::size_t end = path.find('/', i + 1);
      const auto seg = path.substr(i + 1, end == std::string_view::npos ? std::string_view::npos : end - i - 1);
      if (seg == "." || seg == "..") return false;
    }
  }
  return true;
}

}  // namespace

void normalize_path(std::string_view path, std::string& out) {
  if (already_normal(path)) {
    out.append(path);
    return;
  }
  // RFC 3986 §5.2.4 dot-segment removal over segments; empty segments (repeated
  // slashes) are merged away. A path ending in '/', '.' or '..' keeps a trailing '/'.
  std::vector<std::string_view> segments;
  bool trailing_slash = false;
  std::size_t i = 0;
  while (i <= path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    const std::string_view seg = path.substr(i, j - i);
    if (seg == "..") {
      if (!segments.empty()) segments.pop_back();
      trailing_slash = true;
    } else if (seg == ".") {
      trailing_slash = true;
    } else if (!seg.empty()) {
      segments.push_back(seg);
      trailing_slash = false;
    }
    i = j + 1;
  }
  if (!path.empty() && path.back() == '/') trailing_slash = true;
  const std::size_t start = out.size();
  for (auto seg : segments) {
    out += '/';
    out += seg;
  }
  if (out.size() == start || trailing_slash) out += '/';
}

std::string normalize_path(std::string_view path) {
  std::string result;
  result.reserve(path.size() + 1);
  normalize_path(path, result);
  return result;
}

std::optional<Authority> parse_authority(std::string_view authority) {
  auto hp = net::split_host_port(authority);
  if (!hp) return std::nullopt;
  Authority out;
  out.host = std::move(hp->host);
  out.port = hp->port;
  for (auto& c : out.host) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  if (out.host.size() > 1 && out.host.back() == '.') out.host.pop_back();
  if (out.host.empty() || out.host == ".") return std::nullopt;
  for (char c : out.host) {
    // Registered-name characters and ':' for IPv6 literals; anything else is malformed.
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                    c == '_' || c == ':' || c == '~' || c == '%';
    if (!ok) return std::nullopt;
  }
  return out;
}

}  // namespace meshd::mesh
