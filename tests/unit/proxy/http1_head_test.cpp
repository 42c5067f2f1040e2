// Request-head checks that Debian's llhttp 8.1.0 does not make (SPEC §3, DESIGN),
// each with the status meshd answers.
#include <catch2/catch.hpp>
#include <string>

#include "proxy/http1_head.hpp"

using meshd::proxy::check_request_head;
using meshd::proxy::HeadLimits;
using Status = meshd::proxy::HeadVerdict::Status;

namespace {

Status status_of(const std::string& head, HeadLimits limits = {}) {
  return check_request_head(head, limits).status;
}

struct Case {
  const char* name;
  const char* head;
  Status expected;
};

}  // namespace

TEST_CASE("well-formed heads pass and report their framing") {
  auto v = check_request_head("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", {});
  REQUIRE(v.status == Status::ok);
  CHECK(v.minor_version == 1);
  CHECK_FALSE(v.chunked);
  CHECK_FALSE(v.content_length);
  CHECK(v.head_size == 28);
  CHECK(v.header_count == 1);

  v = check_request_head("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", {});
  REQUIRE(v.status == Status::ok);
  CHECK(v.content_length == 5u);

  v = check_request_head("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", {});
  REQUIRE(v.status == Status::ok);
  CHECK(v.chunked);

  v = check_request_head("GET / HTTP/1.0\r\n\r\n", {});  // no Host is fine on 1.0
  REQUIRE(v.status == Status::ok);
  CHECK(v.minor_version == 0);

  v = check_request_head("\r\nGET http://svc.local:8080/x?y HTTP/1.1\r\nHost: other\r\n\r\n", {});
  CHECK(v.status == Status::ok);
  CHECK(status_of("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n") == Status::ok);
  CHECK(status_of("CONNECT svc:443 HTTP/1.1\r\nHost: svc:443\r\n\r\n") == Status::ok);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Tab: a\tb\r\nX-Utf8: \xc3\xa9\r\n\r\n") == Status::ok);
}

TEST_CASE("HTTP/1.2 and above are served as 1.1; other major versions get 505") {
  auto v = check_request_head("GET / HTTP/1.2\r\nHost: x\r\n\r\n", {});
  REQUIRE(v.status == Status::ok);
  CHECK(v.version_rewritten);
  CHECK(v.minor_version == 1);
  CHECK(v.version_offset == 6);
  CHECK(status_of("GET / HTTP/2.0\r\nHost: x\r\n\r\n") == Status::version_not_supported);
  CHECK(status_of("GET / HTTP/0.9\r\n\r\n") == Status::version_not_supported);
  CHECK(status_of("GET / HTTP/3.0\r\nHost: x\r\n\r\n") == Status::version_not_supported);
}

TEST_CASE("incomplete heads ask for more, up to the size limit (431)") {
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r\n") == Status::incomplete);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r") == Status::incomplete);
  CHECK(status_of("GET / HT") == Status::incomplete);
  HeadLimits small{64, 100};
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + std::string(100, 'a'), small) == Status::too_large);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + std::string(100, 'a') + "\r\n\r\n", small) ==
        Status::too_large);
  HeadLimits few{60 * 1024, 3};
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n", few) == Status::ok);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", few) == Status::too_large);
}

TEST_CASE("malformed and ambiguous heads are rejected with the status SPEC §3 gives") {
  const Case cases[] = {
      // framing ambiguity (CL.TE / TE.CL)
      {"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", Status::bad_request},
      {"TE and CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", Status::bad_request},
      {"differing CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", Status::bad_request},
      {"differing CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n", Status::bad_request},
      {"empty CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", Status::bad_request},
      {"signed CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", Status::bad_request},
      {"negative CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", Status::bad_request},
      {"overflowing CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", Status::bad_request},
      {"hex CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", Status::bad_request},
      // Transfer-Encoding lists (RFC 9112 §6.3)
      {"chunked twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", Status::bad_request},
      {"chunked in two fields", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Status::bad_request},
      {"chunked not last", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Status::bad_request},
      {"no chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", Status::bad_request},
      {"gzip then chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Status::not_implemented},
      {"empty TE", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n", Status::bad_request},
      {"TE vertical tab (CVE-2019-18277)", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \x0b" "chunked\r\n\r\n", Status::bad_request},
      {"TE on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Status::bad_request},
      // field syntax
      {"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", Status::bad_request},
      {"obs-fold before CL (CVE-2024-27982)", "POST / HTTP/1.1\r\nHost: x\r\nX: y\r\n Content-Length: 5\r\n\r\n", Status::bad_request},
      {"bare CR in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", Status::bad_request},
      {"bare CR ending a line (CVE-2023-30589)", "GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", Status::bad_request},
      {"bare LF line end", "GET / HTTP/1.1\nHost: x\r\n\r\n", Status::bad_request},
      {"bare LF in headers", "GET / HTTP/1.1\r\nHost: x\n\r\n", Status::bad_request},
      {"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", Status::bad_request},
      {"tab before colon", "GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", Status::bad_request},
      {"empty name", "GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", Status::bad_request},
      {"no colon", "GET / HTTP/1.1\r\nHost: x\r\nJunk\r\n\r\n", Status::bad_request},
      {"bad name char", "GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n", Status::bad_request},
      {"DEL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7f\r\n\r\n", Status::bad_request},
      // Host
      {"no Host on 1.1", "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", Status::bad_request},
      {"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Status::bad_request},
      {"two Hosts any case", "GET / HTTP/1.1\r\nHost: a\r\nHOST: a\r\n\r\n", Status::bad_request},
      // request line
      {"HTTP/0.9", "GET /\r\n\r\n", Status::bad_request},
      {"lowercase version", "GET / http/1.1\r\nHost: x\r\n\r\n", Status::bad_request},
      {"two spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", Status::bad_request},
      {"space in target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", Status::bad_request},
      {"relative target", "GET a/b HTTP/1.1\r\nHost: x\r\n\r\n", Status::bad_request},
      {"asterisk for GET", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", Status::bad_request},
      {"ftp target", "GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n", Status::bad_request},
      {"non-ASCII target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", Status::bad_request},
      {"bad method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", Status::bad_request},
      {"empty request line", "\r\n\r\n", Status::incomplete},
      {"long version", "GET / HTTP/1.10\r\nHost: x\r\n\r\n", Status::bad_request},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    CHECK(status_of(c.head) == c.expected);
  }
  // A NUL inside a value (the table's C strings cannot hold one).
  static constexpr char kNul[] = "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n";
  CHECK(status_of(std::string(kNul, sizeof kNul - 1)) == Status::bad_request);
  // Every rejection names its cause.
  auto v = check_request_head("GET / HTTP/1.1\r\nHost: x\r\nX: y\r\n z\r\n\r\n", {});
  CHECK(std::string(v.reason) == "obsolete line folding in a header field");
}
