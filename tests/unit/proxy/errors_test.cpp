// The error table (proxy/errors.*): indexed by ErrorKind, so its rows must stay in
// the enum's order; routing outcomes map to SPEC §3's local replies; every row's
// access-log flag is its local reply's code, or (for failures after the head went
// downstream) a failure kind with its own Envoy flag.
#include <catch2/catch.hpp>

#include <string>

#include "proxy/errors.hpp"
#include "proxy/local_reply.hpp"

using namespace meshd::proxy;
using Outcome = meshd::mesh::RouteDecision::Outcome;

namespace {

constexpr int kLastKind = static_cast<int>(ErrorKind::downstream_timeout);

const LocalReplyInfo& reply_of(ErrorKind k) {
  const auto& row = describe(k);
  REQUIRE(row.reply.has_value());
  return info(*row.reply);
}

}  // namespace

TEST_CASE("error table: describe(k) is the row of k, for every kind in order") {
  for (int i = 0; i <= kLastKind; ++i) {
    const auto k = static_cast<ErrorKind>(i);
    INFO("ErrorKind #" << i);
    CHECK(describe(k).kind == k);
    CHECK_FALSE(describe(k).flag.empty());
  }
}

TEST_CASE("error table: routing outcomes answer SPEC §3's local replies") {
  // outside_mesh reaches error_for only under DROP_ALL: 403 egress_denied.
  CHECK(error_for(Outcome::outside_mesh) == ErrorKind::egress_denied);
  CHECK(reply_of(error_for(Outcome::outside_mesh)).status == 403);
  CHECK(reply_of(error_for(Outcome::outside_mesh)).code == "egress_denied");

  // A backend, but no route or no router listener for the port: 404 no_route.
  for (const auto o : {Outcome::no_route, Outcome::no_listener}) {
    INFO("outcome " << static_cast<int>(o));
    CHECK(error_for(o) == ErrorKind::no_route);
    CHECK(reply_of(error_for(o)).status == 404);
    CHECK(reply_of(error_for(o)).code == "no_route");
  }

  // A virtual service without a provider: 503 no_healthy_upstream.
  CHECK(error_for(Outcome::no_provider) == ErrorKind::no_provider);
  CHECK(reply_of(error_for(Outcome::no_provider)).status == 503);
  CHECK(reply_of(error_for(Outcome::no_provider)).code == "no_healthy_upstream");

  // Every routing error is meshd's own (the request never left it).
  for (const auto o : {Outcome::outside_mesh, Outcome::no_route, Outcome::no_listener, Outcome::no_provider}) {
    CHECK(describe(error_for(o)).source == ErrorSource::internal);
  }
}

TEST_CASE("error table: the other kinds answer SPEC §3's statuses") {
  struct Want {
    ErrorKind kind;
    int status;
    std::string code;
  };
  const Want wants[] = {
      {ErrorKind::no_endpoints, 503, "no_healthy_upstream"},
      {ErrorKind::no_authority, 400, "bad_request"},
      {ErrorKind::rate_limited, 429, "rate_limited"},
      {ErrorKind::overflow, 503, "overflow"},
      {ErrorKind::connect_failure, 503, "upstream_connect_failure"},
      {ErrorKind::upstream_reset, 502, "upstream_reset"},
      {ErrorKind::upstream_protocol, 502, "upstream_reset"},
      {ErrorKind::upstream_refused, 502, "upstream_reset"},
      {ErrorKind::upstream_timeout, 504, "upstream_timeout"},
      {ErrorKind::per_try_timeout, 504, "upstream_timeout"},
      {ErrorKind::downstream_malformed, 400, "bad_request"},
      {ErrorKind::downstream_timeout, 408, "request_timeout"},
  };
  for (const auto& w : wants) {
    INFO("ErrorKind #" << static_cast<int>(w.kind));
    CHECK(reply_of(w.kind).status == w.status);
    CHECK(reply_of(w.kind).code == w.code);
  }
  CHECK(describe(ErrorKind::connect_failure).source == ErrorSource::upstream);
  CHECK(describe(ErrorKind::upstream_reset).source == ErrorSource::upstream);
  CHECK(describe(ErrorKind::downstream_malformed).source == ErrorSource::downstream);
  CHECK(describe(ErrorKind::downstream_closed).source == ErrorSource::downstream);
}

TEST_CASE("error table: a row with a reply logs that reply's code") {
  for (int i = 0; i <= kLastKind; ++i) {
    const auto& row = describe(static_cast<ErrorKind>(i));
    INFO("ErrorKind #" << i << " flag " << row.flag);
    if (!row.reply) continue;
    CHECK(row.flag == info(*row.reply).code);
    CHECK(envoy_response_flag(row.flag) == info(*row.reply).envoy_flag);
  }
}

TEST_CASE("error table: failures after the head went downstream have no reply, and Envoy flags UPE and DC") {
  const auto& after_headers = describe(ErrorKind::reset_after_headers);
  CHECK_FALSE(after_headers.reply.has_value());
  CHECK(after_headers.flag == kUpstreamResetAfterHeaders);
  CHECK(envoy_response_flag(after_headers.flag) == "UPE");

  const auto& closed = describe(ErrorKind::downstream_closed);
  CHECK_FALSE(closed.reply.has_value());
  CHECK(closed.flag == kDownstreamDisconnect);
  CHECK(envoy_response_flag(closed.flag) == "DC");

  // Those two are the only rows without a reply; every flag maps to an Envoy flag.
  int without_reply = 0;
  for (int i = 0; i <= kLastKind; ++i) {
    const auto& row = describe(static_cast<ErrorKind>(i));
    INFO("ErrorKind #" << i << " flag " << row.flag);
    if (!row.reply) ++without_reply;
    CHECK(envoy_response_flag(row.flag) != "-");
  }
  CHECK(without_reply == 2);
}
