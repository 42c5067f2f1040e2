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
