#include "proxy/errors.hpp"

namespace meshd::proxy {

namespace {
using K = ErrorKind;
using S = ErrorSource;
using R = LocalReply;
// In ErrorKind's order (checked by tests/unit/proxy/errors_test.cpp).
constexpr ErrorRow kRows[] = {
    {K::egress_denied, S::internal, R::egress_denied, "egress_denied"},
    {K::no_route, S::internal, R::no_route, "no_route"},
    {K::no_provider, S::internal, R::no_healthy_upstream, "no_healthy_upstream"},
    {K::no_endpoints, S::internal, R::no_healthy_upstream, "no_healthy_upstream"},
    {K::no_authority, S::downstream, R::bad_request, "bad_request"},
    {K::rate_limited, S::internal, R::rate_limited, "rate_limited"},
    {K::overflow, S::internal, R::overflow, "overflow"},
    {K::connect_failure, S::upstream, R::upstream_connect_failure, "upstream_connect_failure"},
    {K::upstream_reset, S::upstream, R::upstream_reset, "upstream_reset"},
    {K::upstream_protocol, S::upstream, R::upstream_reset, "upstream_reset"},
    {K::upstream_refused, S::upstream, R::upstream_reset, "upstream_reset"},
    {K::upstream_timeout, S::upstream, R::upstream_timeout, "upstream_timeout"},
    {K::per_try_timeout, S::upstream, R::upstream_timeout, "upstream_timeout"},
    {K::reset_after_headers, S::upstream, std::nullopt, kUpstreamResetAfterHeaders},
    {K::downstream_closed, S::downstream, std::nullopt, kDownstreamDisconnect},
    {K::downstream_malformed, S::downstream, R::bad_request, "bad_request"},
    {K::downstream_timeout, S::downstream, R::request_timeout, "request_timeout"},
};
}  // namespace

const ErrorRow& describe(ErrorKind k) { return kRows[static_cast<std::size_t>(k)]; }

ErrorKind error_for(mesh::RouteDecision::Outcome o) {
  using O = mesh::RouteDecision::Outcome;
  switch (o) {
    case O::outside_mesh: return K::egress_denied;
    case O::no_provider: return K::no_provider;
    case O::no_listener:
    case O::no_route:
    case O::routed: break;
  }
  return K::no_route;
}

}  // namespace meshd::proxy
