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

#include <span>
#include <vector>

#include "proxy/http1_codec.hpp"
#include "proxy/message.hpp"

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

// The end-to-end fields of a parsed head, in order (hop-by-hop fields dropped, and
// for a request Expect, which meshd answers itself): what the neutral message holds.
// Returns where the head's first Content-Length or Transfer-Encoding field stood
// among the kept fields (kFramingAtEnd when it had none).
std::size_t end_to_end_fields(const MessageHead& head, bool request, std::vector<FieldView>& out);
// Whether a trailer field may be passed on (RFC 9110 §6.5.1: never framing, routing
// or hop-by-hop fields).
bool trailer_allowed(std::string_view name);

// The request head meshd sends upstream (appended to `out`): origin-form, Host set to
// the authority (at the place of the client's Host), x-forwarded-for appended,
// x-forwarded-proto and x-request-id added; chunked unless the length is known.
void build_request_head(const OutgoingRequest& r, std::string& out);

struct DownstreamResponse {
  enum class Framing { none, length, chunked, close } framing = Framing::none;
  std::uint64_t content_length = 0;
  bool close = false;  // add "connection: close"
};
// The response head meshd sends downstream (appended to `out`).
void build_response_head(const ResponseHead& in, const DownstreamResponse& r, std::string& out);
// An interim (1xx) response head.
void build_interim_head(const ResponseHead& in, std::string& out);
// Trailer fields after the last chunk, and the blank line ending the message.
void build_last_chunk(std::span<const Field> trailers, std::string& out);

// Chunked framing of one piece ("<hex>\r\n"), and the last chunk.
std::string chunk_header(std::size_t size);
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

bool iequals_ascii(std::string_view a, std::string_view b);

}  // namespace meshd::proxy
