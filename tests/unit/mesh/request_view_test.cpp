#include <catch2/catch.hpp>

#include "mesh/compiled/request_view.hpp"

#include <string>
#include <vector>

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
  CHECK(normalize_path("/..") == "/");
  CHECK(normalize_path("/.") == "/");
  CHECK(normalize_path("/a//") == "/a/");
  CHECK(normalize_path("/a/...") == "/a/...");
  CHECK(normalize_path("a/b") == "/a/b");
  std::string out = "prefix";
  normalize_path("/x/./y", out);
  CHECK(out == "prefix/x/y");
  normalize_path("/z", out);
  CHECK(out == "prefix/x/y/z");
}

namespace {
// The plain segment algorithm, without the already-normal shortcut.
std::string reference_normalize(std::string_view path) {
  std::vector<std::string_view> segments;
  bool trailing = false;
  for (std::size_t i = 0; i <= path.size();) {
    std::size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    const auto seg = path.substr(i, j - i);
    if (seg == "..") {
      if (!segments.empty()) segments.pop_back();
      trailing = true;
    } else if (seg == ".") {
      trailing = true;
    } else if (!seg.empty()) {
      segments.push_back(seg);
      trailing = false;
    }
    i = j + 1;
  }
  if (!path.empty() && path.back() == '/') trailing = true;
  std::string r;
  for (auto s : segments) r += "/" + std::string(s);
  if (r.empty() || trailing) r += '/';
  return r;
}
}  // namespace

TEST_CASE("path normalization agrees with the plain algorithm on every short path of '/', '.' and 'a'") {
  const char alphabet[] = {'/', '.', 'a'};
  std::size_t checked = 0;
  for (std::size_t len = 0; len <= 8; ++len) {
    std::size_t total = 1;
    for (std::size_t i = 0; i < len; ++i) total *= 3;
    for (std::size_t n = 0; n < total; ++n) {
      std::string p;
      for (std::size_t k = 0, v = n; k < len; ++k, v /= 3) p += alphabet[v % 3];
      INFO(p);
      REQUIRE(normalize_path(p) == reference_normalize(p));
      ++checked;
    }
  }
  CHECK(checked == 9841);
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
