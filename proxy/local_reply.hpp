#pragma once
// The statuses meshd answers itself (SPEC §3): one table, used by the data path, the
// access log and `meshd route`.
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

// Access-log flags for failures that are not local replies (those use info(r).code).
inline constexpr std::string_view kRetriesExhausted = "retries_exhausted";
inline constexpr std::string_view kRetryBudgetExhausted = "retry_budget_exhausted";
inline constexpr std::string_view kUpstreamResetAfterHeaders = "upstream_reset_after_headers";
inline constexpr std::string_view kDownstreamDisconnect = "downstream_disconnect";

// Envoy's short response flag for an access-log flag of meshd's (a local reply code or
// one of the failure kinds above); "-" for none.
std::string_view envoy_response_flag(std::string_view meshd_flag);

}  // namespace meshd::proxy
