#include <catch2/catch.hpp>

#include "net/address.hpp"

using namespace meshd::net;

TEST_CASE("IP literals parse, host names do not") {
  auto v4 = parse_ip("127.0.0.2");
  REQUIRE(v4);
  CHECK_FALSE(v4->v6);
  CHECK(v4->str() == "127.0.0.2");
  auto v6 = parse_ip("[::1]");
  REQUIRE(v6);
  CHECK(v6->v6);
  CHECK(v6->str() == "::1");
  CHECK(endpoint_text(*v6, 80) == "[::1]:80");
  CHECK(endpoint_text(*v4, 8080) == "127.0.0.2:8080");
  CHECK_FALSE(parse_ip("localhost"));
  CHECK_FALSE(parse_ip("1.2.3"));
  CHECK_FALSE(parse_ip("256.1.1.1"));
  CHECK_FALSE(parse_ip(""));
}

TEST_CASE("host:port splits, for resolvers and authorities") {
  auto hp = split_host_port("10.0.0.1:53");
  REQUIRE(hp);
  CHECK(hp->host == "10.0.0.1");
  CHECK(hp->port == 53);
  hp = split_host_port("[fe80::1]:5353");
  REQUIRE(hp);
  CHECK(hp->host == "fe80::1");
  CHECK(hp->port == 5353);
  hp = split_host_port("fe80::1");
  REQUIRE(hp);
  CHECK(hp->host == "fe80::1");
  CHECK_FALSE(hp->port);
  CHECK_FALSE(split_host_port(":80"));
  CHECK_FALSE(split_host_port("a:b"));
  CHECK_FALSE(split_host_port("[::1"));
  CHECK_FALSE(split_host_port("[::1]x"));
}
