#pragma once
// gRPC's conventions that the request path applies whatever protocol carries the
// request (SPEC §7): telling a gRPC request, the trailers-only form of meshd's local
// replies, and grpc-timeout.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/local_reply.hpp"

namespace meshd::proxy {

// A gRPC request: content-type application/grpc, application/grpc+proto and the like
// (not application/grpc-web, whose framing differs). It gets meshd's answers
// trailers-only: :status 200 with grpc-status, grpc-message and x-meshd-error, no body.
bool is_grpc_content_type(std::string_view content_type);
// The grpc-status of a local reply: no_route 12 UNIMPLEMENTED, egress_denied 7
// PERMISSION_DENIED, rate_limited 8 RESOURCE_EXHAUSTED, upstream_timeout 4
// DEADLINE_EXCEEDED, every other 14 UNAVAILABLE.
int grpc_status(LocalReply r);
// grpc-message's percent-encoding (gRPC over HTTP/2: bytes outside 0x20-0x7E and
// '%' become %XX).
std::string grpc_percent_encode(std::string_view message);
// A grpc-timeout value (gRPC over HTTP/2: 1 to 8 digits and a unit, H M S m u n),
// rounded up to whole milliseconds; nullopt when it is not one (it is then ignored,
// as Envoy ignores it).
std::optional<std::chrono::milliseconds> parse_grpc_timeout(std::string_view value);

}  // namespace meshd::proxy
