#include "proxy/local_reply.hpp"

namespace meshd::proxy {

namespace {
constexpr LocalReplyInfo kTable[] = {
    {400, "bad_request", "malformed or ambiguous HTTP request"},
    {403, "egress_denied", "the destination is not a backend of this virtual node"},
    {404, "no_route", "no route matches"},
    {408, "request_timeout", "the request headers did not complete in time"},
    {429, "rate_limited", "the listener's rate limit is exceeded"},
    {431, "headers_too_large", "the request headers are too large"},
    {501, "not_implemented", "not implemented by meshd"},
    {505, "http_version_not_supported", "HTTP version not supported"},
    {502, "upstream_reset", "the upstream closed or reset the connection before a full response"},
    {503, "upstream_connect_failure", "no connection could be made to any endpoint"},
    {503, "no_healthy_upstream", "the target has no usable endpoints"},
    {503, "overflow", "a connection-pool limit is reached"},
    {504, "upstream_timeout", "the upstream did not answer in time"},
};
}  // namespace

const LocalReplyInfo& info(LocalReply r) { return kTable[static_cast<int>(r)]; }

}  // namespace meshd::proxy
