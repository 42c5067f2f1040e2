#pragma once
// Building HTTP/1.1 heads to send on: hop-by-hop fields removed (Connection and the
// fields it names, Keep-Alive, Proxy-Connection, TE, Transfer-Encoding, Upgrade,
// HTTP2-Settings, and Content-Length, which is set again from the framing), names
// spelled as received, and body framing chosen for the next hop.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/http1_codec.hpp"

namespace meshd::proxy {

std::string_view reason_phrase(int status);

// The hop-by-hop fields of one message: the fixed list, and the fields its Connection
// headers name. The Connection values are found once per message, not once per field.
class HopByHop {
 public:
  explicit HopByHop(const MessageHead& head);
  bool operator()(std::string_view name) const;

 private:
  const MessageHead& head_;
  std::array<std::string_view, 4> connection_{};
  std::size_t count_ = 0;
  bool overflow_ = false;  // more Connection fields than kept: ask the head
};

struct UpstreamRequest {
  std::string_view path_and_query;  // origin-form, path normalized
  std::string_view host;            // the Host to send
  std::string_view forwarded_for;   // appended to x-forwarded-for
  std::string_view request_id;      // set when the request had none
  bool body = false;                // chunked unless content_length
  std::optional<std::uint64_t> content_length;
};
// The request head meshd sends upstream (appended to `out`).
void build_request_head(const MessageHead& in, const UpstreamRequest& r, std::string& out);

struct DownstreamResponse {
  enum class Framing { none, length, chunked, close } framing = Framing::none;
  std::uint64_t content_length = 0;
  bool close = false;  // add "connection: close"
};
// The response head meshd sends downstream (appended to `out`).
void build_response_head(const MessageHead& in, const DownstreamResponse& r, std::string& out);

// Chunked framing of one piece ("<hex>\r\n"), and the last chunk.
std::string chunk_header(std::size_t size);
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

bool iequals_ascii(std::string_view a, std::string_view b);

}  // namespace meshd::proxy
