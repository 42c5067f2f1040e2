#include "proxy/message.hpp"

namespace meshd::proxy {

std::string_view version_text(Version v) {
  switch (v) {
    case Version::http10: return "HTTP/1.0";
    case Version::http11: return "HTTP/1.1";
    case Version::http2: return "HTTP/2";
  }
  return "HTTP/1.1";
}

std::optional<std::string_view> find_field(std::span<const Field> fields, std::string_view name) {
  for (const auto& f : fields) {
    if (f.name.size() != name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < name.size() && same; ++i) {
      same = (static_cast<unsigned char>(f.name[i]) | 0x20) == (static_cast<unsigned char>(name[i]) | 0x20);
    }
    if (same) return f.value;
  }
  return std::nullopt;
}

}  // namespace meshd::proxy
