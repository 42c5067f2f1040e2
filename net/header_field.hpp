#pragma once
// A header field as views into a buffer the caller owns: the name as received (any
// case) and the value without surrounding whitespace. Below both the codec (proxy/,
// which fills them) and routing (mesh/, which matches on them), so the data path hands
// the parsed fields to the route matcher without copying them, and neither depends on
// the other for it.
#include <string_view>

namespace meshd::net {

struct HeaderField {
  std::string_view name;  // as received (any case)
  std::string_view value;
};

}  // namespace meshd::net
