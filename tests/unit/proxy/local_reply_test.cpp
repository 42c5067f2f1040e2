// The one table of local replies (SPEC §3) and the Envoy response flags access-log
// formats print for meshd's failure kinds.
#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "proxy/local_reply.hpp"

using namespace meshd::proxy;

TEST_CASE("every local reply and failure kind has an Envoy response flag") {
  std::set<std::string> codes;
  for (int r = 0; r <= static_cast<int>(LocalReply::upstream_timeout); ++r) {
    const auto& i = info(static_cast<LocalReply>(r));
    CHECK(codes.insert(std::string(i.code)).second);  // codes are unique
    CHECK(envoy_response_flag(i.code) == i.envoy_flag);
    CHECK(i.envoy_flag.size() >= 2);
  }
  CHECK(codes.size() == 13);
  CHECK(envoy_response_flag(info(LocalReply::no_healthy_upstream).code) == "UH");
  CHECK(envoy_response_flag(info(LocalReply::upstream_connect_failure).code) == "UF");
  CHECK(envoy_response_flag(info(LocalReply::upstream_timeout).code) == "UT");
  CHECK(envoy_response_flag(info(LocalReply::overflow).code) == "UO");
  CHECK(envoy_response_flag(kRetriesExhausted) == "URX");
  CHECK(envoy_response_flag(kRetryBudgetExhausted) == "URX");
  CHECK(envoy_response_flag(kUpstreamResetAfterHeaders) == "UPE");
  CHECK(envoy_response_flag(kDownstreamDisconnect) == "DC");
  CHECK(envoy_response_flag("") == "-");
  CHECK(envoy_response_flag("something_else") == "-");
}

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
