#pragma once
// What routing needs to know of a request, as views into the codec's buffers, and the
// normalizations applied before matching (SPEC §3). No allocation on the match path
// except where a header appears more than once (its values are then joined with ',').
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "net/header_field.hpp"

namespace meshd::mesh {

using HeaderField = net::HeaderField;

struct RequestView {
  std::string_view method;  // "GET"
  std::string_view scheme = "http";
  std::string_view path;   // normalized (normalize_path), without the query
  std::string_view query;  // after '?', without it
  std::span<const HeaderField> headers;
};

// Removes dot-segments and merges repeated slashes; percent-escapes (including %2F)
// are kept as they are. The result always starts with '/'.
std::string normalize_path(std::string_view path);
// The same, appended to `out` (no allocation when `out` has room).
void normalize_path(std::string_view path, std::string& out);

struct Authority {
  std::string host;  // lower-cased, without a trailing dot, IPv6 without brackets
  std::optional<std::uint16_t> port;
};
// "Name[:port]" -> host lower-cased without a trailing dot. nullopt when malformed.
std::optional<Authority> parse_authority(std::string_view authority);

bool iequals(std::string_view a, std::string_view b);

}  // namespace meshd::mesh
