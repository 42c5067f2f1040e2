#pragma once
// The statuses meshd answers itself (SPEC §3): one table, used by the data path, the
// access log and `meshd route`.
#include <string>
#include <string_view>

namespace meshd::proxy {

enum class LocalReply {
  bad_request,
  egress_denied,
  no_route,
  request_timeout,
  rate_limited,
  headers_too_large,
  not_implemented,
  http_version_not_supported,
  upstream_reset,
  upstream_connect_failure,
  no_healthy_upstream,
  overflow,
  upstream_timeout,
};

struct LocalReplyInfo {
  int status;
  std::string_view code;     // the x-meshd-error value and the access-log flag's name
  std::string_view summary;  // the start of the text/plain body
  std::string_view envoy_flag;  // Envoy's %RESPONSE_FLAGS% for it (access log formats)
};

const LocalReplyInfo& info(LocalReply r);

// A gRPC request (content-type application/grpc, or application/grpc+proto and the
// like) gets meshd's answers trailers-only (SPEC §7): :status 200 with grpc-status,
// grpc-message and x-meshd-error, no body.
bool is_grpc_content_type(std::string_view content_type);
// The grpc-status of a local reply: no_route 12 UNIMPLEMENTED, egress_denied 7
// PERMISSION_DENIED, rate_limited 8 RESOURCE_EXHAUSTED, upstream_timeout 4
// DEADLINE_EXCEEDED, every other 14 UNAVAILABLE.
int grpc_status(LocalReply r);
// grpc-message's percent-encoding (gRPC over HTTP/2: bytes outside 0x20-0x7E and
// '%' become %XX).
std::string grpc_percent_encode(std::string_view message);

// Access-log flags for failures that are not local replies (those use info(r).code).
inline constexpr std::string_view kRetriesExhausted = "retries_exhausted";
inline constexpr std::string_view kRetryBudgetExhausted = "retry_budget_exhausted";
inline constexpr std::string_view kUpstreamResetAfterHeaders = "upstream_reset_after_headers";
inline constexpr std::string_view kDownstreamDisconnect = "downstream_disconnect";

// Envoy's short response flag for an access-log flag of meshd's (a local reply code or
// one of the failure kinds above); "-" for none.
std::string_view envoy_response_flag(std::string_view meshd_flag);

}  // namespace meshd::proxy
