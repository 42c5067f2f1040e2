#include "proxy/local_reply.hpp"

#include <utility>

namespace meshd::proxy {

namespace {
constexpr LocalReplyInfo kTable[] = {
    {400, "bad_request", "malformed or ambiguous HTTP request", "DPE"},
    {403, "egress_denied", "the destination is not a backend of this virtual node", "NR"},
    {404, "no_route", "no route matches", "NR"},
    {408, "request_timeout", "the request headers did not complete in time", "SI"},
    {429, "rate_limited", "the listener's rate limit is exceeded", "RL"},
    {431, "headers_too_large", "the request headers are too large", "DPE"},
    {501, "not_implemented", "not implemented by meshd", "DPE"},
    {505, "http_version_not_supported", "HTTP version not supported", "DPE"},
    {502, "upstream_reset", "the upstream closed or reset the connection before a full response", "UC"},
    {503, "upstream_connect_failure", "no connection could be made to any endpoint", "UF"},
    {503, "no_healthy_upstream", "the target has no usable endpoints", "UH"},
    {503, "overflow", "a connection-pool limit is reached", "UO"},
    {504, "upstream_timeout", "the upstream did not answer in time", "UT"},
};
// Failure kinds that are not local replies.
constexpr std::pair<std::string_view, std::string_view> kOtherFlags[] = {
    {kRetriesExhausted, "URX"},
    {kRetryBudgetExhausted, "URX"},
    {kUpstreamResetAfterHeaders, "UPE"},
    {kDownstreamDisconnect, "DC"},
};
}  // namespace

const LocalReplyInfo& info(LocalReply r) { return kTable[static_cast<int>(r)]; }

std::string_view envoy_response_flag(std::string_view meshd_flag) {
  for (const auto& i : kTable) {
    if (i.code == meshd_flag) return i.envoy_flag;
  }
  for (const auto& [flag, envoy] : kOtherFlags) {
    if (flag == meshd_flag) return envoy;
  }
  return "-";
}

}  // namespace meshd::proxy
