// gRPC's conventions on the request path (proxy/grpc.hpp, SPEC §7).
#include <catch2/catch.hpp>

#include <string>

#include "proxy/grpc.hpp"

using namespace meshd::proxy;
using namespace std::chrono_literals;

TEST_CASE("gRPC requests are told by their content-type; local replies map to gRPC statuses (SPEC §7)") {
  CHECK(is_grpc_content_type("application/grpc"));
  CHECK(is_grpc_content_type("application/grpc+proto"));
  CHECK(is_grpc_content_type("Application/GRPC+json"));
  CHECK(is_grpc_content_type("application/grpc;charset=utf-8"));
  CHECK_FALSE(is_grpc_content_type("application/grpc-web"));
  CHECK_FALSE(is_grpc_content_type("application/grpc-web+proto"));
  CHECK_FALSE(is_grpc_content_type("application/grpcx"));
  CHECK_FALSE(is_grpc_content_type("application/json"));
  CHECK_FALSE(is_grpc_content_type("application/grp"));
  CHECK_FALSE(is_grpc_content_type(""));

  CHECK(grpc_status(LocalReply::no_route) == 12);
  CHECK(grpc_status(LocalReply::egress_denied) == 7);
  CHECK(grpc_status(LocalReply::rate_limited) == 8);
  CHECK(grpc_status(LocalReply::upstream_timeout) == 4);
  for (auto r : {LocalReply::upstream_reset, LocalReply::upstream_connect_failure, LocalReply::no_healthy_upstream,
                 LocalReply::overflow, LocalReply::bad_request, LocalReply::request_timeout}) {
    CHECK(grpc_status(r) == 14);
  }

  CHECK(grpc_percent_encode("no route matches") == "no route matches");
  CHECK(grpc_percent_encode("100% sure\n") == "100%25 sure%0A");
  CHECK(grpc_percent_encode("caf\xc3\xa9") == "caf%C3%A9");
  CHECK(grpc_percent_encode(std::string("a\0b", 3)) == "a%00b");
  CHECK(grpc_percent_encode("~ !") == "~ !");
}

TEST_CASE("grpc-timeout values: digits and a unit, rounded up to milliseconds; anything else is ignored") {
  CHECK(parse_grpc_timeout("1S") == 1000ms);
  CHECK(parse_grpc_timeout("250m") == 250ms);
  CHECK(parse_grpc_timeout("2M") == 120000ms);
  CHECK(parse_grpc_timeout("1H") == 3600000ms);
  CHECK(parse_grpc_timeout("1500u") == 2ms);  // rounded up
  CHECK(parse_grpc_timeout("1000u") == 1ms);
  CHECK(parse_grpc_timeout("1n") == 1ms);
  CHECK(parse_grpc_timeout("0m") == 0ms);
  CHECK(parse_grpc_timeout("99999999H") == std::chrono::milliseconds(99999999ull * 3600000));
  CHECK_FALSE(parse_grpc_timeout("123456789S"));  // more than 8 digits
  CHECK_FALSE(parse_grpc_timeout("S"));
  CHECK_FALSE(parse_grpc_timeout("10"));
  CHECK_FALSE(parse_grpc_timeout("10s"));  // units are case-sensitive
  CHECK_FALSE(parse_grpc_timeout("1.5S"));
  CHECK_FALSE(parse_grpc_timeout("-1S"));
  CHECK_FALSE(parse_grpc_timeout(" 1S"));
  CHECK_FALSE(parse_grpc_timeout(""));
}
