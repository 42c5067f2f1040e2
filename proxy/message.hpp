#pragma once
// Protocol-neutral messages (DESIGN "The protocol seam"): what the request lifecycle
// sees of a request and a response, whatever wire protocol carried them. The codec
// adapters (proxy/http1_server, proxy/http1_client; HTTP/2 next) translate between
// these and their wire: chunk framing, Content-Length checks, Connection tokens and
// versions stay in the adapters. Fields are views into the adapter's buffers, valid
// for the exchange (request) or until the next read of the same side (response).
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "proxy/http1_head.hpp"

namespace meshd::proxy {

using Field = FieldView;
inline constexpr std::size_t kFramingAtEnd = static_cast<std::size_t>(-1);

// The protocol a message came in (for logs: %PROTOCOL%; nothing routes on it).
enum class Version : std::uint8_t { http10, http11, http2 };
std::string_view version_text(Version v);

// The first value of a field (names compared case-insensitively), or nullopt.
std::optional<std::string_view> find_field(std::span<const Field> fields, std::string_view name);

struct RequestHead {
  std::string_view method;
  std::string_view scheme = "http";  // the absolute-form's scheme, later :scheme or TLS
  std::string_view authority;        // absolute-form authority, else Host (:authority)
  std::string_view path;             // origin-form target with its query, as received
  // End-to-end fields in the order received, names as sent; hop-by-hop fields are
  // not here (the adapter removed them). A Host field stays at its place.
  std::span<const Field> fields;
  Version version = Version::http11;
  // A protocol switch the client asked for (HTTP/1.1 Upgrade, later HTTP/2's
  // :protocol), h2c aside (served as HTTP/1.1); empty for none.
  std::string_view upgrade;
  bool has_body = false;                // a body follows the head
  std::optional<std::uint64_t> length;  // its length, when the sender declared it
  bool grpc = false;                    // a gRPC request (proxy/grpc.hpp: its content-type)
  // Where the sender put its body framing among `fields` (HTTP/1.1 writes its own
  // framing field there, so that field order is kept end to end); npos: at the end.
  std::size_t framing_at = kFramingAtEnd;

  std::optional<std::string_view> get(std::string_view name) const { return find_field(fields, name); }
};

struct ResponseHead {
  int status = 0;
  std::string_view reason;  // may be empty (HTTP/2 has none)
  std::span<const Field> fields;  // end-to-end fields, as RequestHead's
  Version version = Version::http11;
  bool has_body = true;                 // false: 1xx, 204, 304, a response to HEAD
  std::optional<std::uint64_t> length;  // the body's declared length
  std::size_t framing_at = kFramingAtEnd;  // as RequestHead's

  std::optional<std::string_view> get(std::string_view name) const { return find_field(fields, name); }
};

// Why a body (or an exchange) ended before its end.
enum class ResetCause : std::uint8_t {
  none,
  closed,     // the peer closed or reset the connection
  timeout,    // the idle or request deadline passed
  malformed,  // the peer broke the protocol (a bad chunk, a short body)
};

// One step of a body: a piece of data, its end (with trailers, maybe none), or a reset.
struct BodyEvent {
  enum class Kind : std::uint8_t { data, end, reset } kind = Kind::end;
  std::string_view data;          // data: valid until the next read of the same side
  std::span<const Field> trailers;  // end: trailer fields (HTTP/1.1 chunked, HTTP/2 HEADERS)
  ResetCause cause = ResetCause::none;
};

// The request as it goes upstream: the downstream's head and what meshd changes.
struct OutgoingRequest {
  const RequestHead* head = nullptr;
  std::string_view path;           // normalized, with the query
  std::string_view authority;      // Host / :authority
  std::string_view forwarded_for;  // appended to x-forwarded-for
  std::string_view request_id;     // x-request-id, when the request has none
  bool has_body = false;
  std::optional<std::uint64_t> length;  // the body's length, when known
  std::chrono::milliseconds idle{300000};  // how long sending may stall
};

}  // namespace meshd::proxy
