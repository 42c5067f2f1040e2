// Debian's llhttp 8.1.0 must be built with LLHTTP_STRICT_MODE=1: without it, it
// accepts chunk data with no CRLF after it and a bare CR ending the headers
// (CVE-2023-30589). These inputs are accepted by the lenient build, so this test
// fails if the library is ever compiled without strict mode.
#include <llhttp.h>

#include <catch2/catch.hpp>
#include <string_view>

namespace {

llhttp_errno_t parse(std::string_view input) {
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  llhttp_t parser;
  llhttp_init(&parser, HTTP_REQUEST, &settings);
  return llhttp_execute(&parser, input.data(), input.size());
}

}  // namespace

TEST_CASE("llhttp is compiled in strict mode") {
  CHECK(LLHTTP_STRICT_MODE == 1);
  // Well-formed input parses.
  CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n") == HPE_OK);
}

TEST_CASE("strict llhttp rejects chunk data not followed by CRLF") {
  CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n") != HPE_OK);
}

TEST_CASE("strict llhttp rejects a bare CR ending a header line (CVE-2023-30589)") {
  CHECK(parse("GET / HTTP/1.1\r\nHost: a\rX-Other: b\r\n\r\n") != HPE_OK);
}
