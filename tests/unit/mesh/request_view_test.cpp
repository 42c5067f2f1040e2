#include <catch2/catch.hpp>

#include "mesh/request_view.hpp"

using meshd::mesh::normalize_path;
using meshd::mesh::parse_authority;

TEST_CASE("paths are normalized: dot-segments removed, slashes merged, %2F kept") {
  CHECK(normalize_path("/") == "/");
  CHECK(normalize_path("") == "/");
  CHECK(normalize_path("/a/b") == "/a/b");
  CHECK(normalize_path("/a/b/") == "/a/b/");
  CHECK(normalize_path("//a///b") == "/a/b");
  CHECK(normalize_path("/a/./b") == "/a/b");
  CHECK(normalize_path("/a/../b") == "/b");
  CHECK(normalize_path("/../../a") == "/a");
  CHECK(normalize_path("/a/b/..") == "/a/");
  CHECK(normalize_path("/a/.") == "/a/");
  CHECK(normalize_path("/a%2Fb/../c") == "/c");
  CHECK(normalize_path("/a%2F..%2Fb") == "/a%2F..%2Fb");
  CHECK(normalize_path("/.hidden/..x") == "/.hidden/..x");
}

TEST_CASE("authorities are lower-cased without a trailing dot") {
  auto a = parse_authority("User-Service.Local.:8080");
  REQUIRE(a);
  CHECK(a->host == "user-service.local");
  CHECK(a->port == 8080);
  a = parse_authority("svc");
  REQUIRE(a);
  CHECK(a->host == "svc");
  CHECK_FALSE(a->port);
  a = parse_authority("[::1]:9");
  REQUIRE(a);
  CHECK(a->host == "::1");
  CHECK(a->port == 9);
  CHECK_FALSE(parse_authority(""));
  CHECK_FALSE(parse_authority("host:0"));
  CHECK_FALSE(parse_authority("host:99999"));
  CHECK_FALSE(parse_authority("host:"));
  CHECK_FALSE(parse_authority("ho st"));
  CHECK_FALSE(parse_authority("a@b"));
}
