#include <catch2/catch.hpp>
#include <string>

#include "proxy/http1_codec.hpp"

using namespace meshd::proxy;
using Event = Http1Parser::Event;

namespace {

struct Parsed {
  std::vector<std::string> heads;  // method+target or status
  std::vector<std::string> bodies;
  int completes = 0;
  bool error = false;
  HeadVerdict::Status status = HeadVerdict::Status::ok;
};

// Feeds `input` in pieces of `step` bytes, as a connection would.
Parsed run(Http1Parser& p, const std::string& input, std::size_t step = 1 << 20, bool close = false) {
  Parsed out;
  std::string buffer;
  std::size_t fed = 0;
  std::string body;
  for (int guard = 0; guard < 100000; ++guard) {
    auto s = p.parse(buffer);
    if (s.event == Event::body) body += p.body();  // a view into the buffer: use it first
    buffer.erase(0, s.consumed);
    if (s.event == Event::need_more) {
      if (fed >= input.size()) break;
      buffer += input.substr(fed, step);
      fed += step;
      continue;
    }
    if (s.event == Event::head) {
      out.heads.push_back(p.head().status ? std::to_string(p.head().status)
                                          : std::string(p.head().method) + " " + std::string(p.head().target));
    } else if (s.event == Event::body) {
      continue;
    } else if (s.event == Event::message_complete) {
      ++out.completes;
      out.bodies.push_back(body);
      body.clear();
    } else {
      out.error = true;
      out.status = p.error_status();
      return out;
    }
  }
  if (close) {
    auto s = p.finish();
    if (s.event == Event::message_complete) {
      ++out.completes;
      out.bodies.push_back(body);
    } else if (s.event == Event::error) {
      out.error = true;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("requests with Content-Length, chunked and no body, fed byte by byte or at once") {
  const std::string input =
      "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
      "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nT: v\r\n\r\n"
      "GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
  for (std::size_t step : {std::size_t{1}, std::size_t{7}, std::size_t{1 << 20}}) {
    Http1Parser p(Http1Parser::Kind::request, {});
    auto r = run(p, input, step);
    INFO("step " << step);
    CHECK_FALSE(r.error);
    CHECK(r.heads == std::vector<std::string>{"POST /a", "POST /b", "GET /c"});
    CHECK(r.bodies == std::vector<std::string>{"hello", "abcde", ""});
    CHECK(r.completes == 3);
  }
}

TEST_CASE("head fields keep their case and order; lookups ignore case") {
  Http1Parser p(Http1Parser::Kind::request, {});
  const std::string in = "GET /x?y=1 HTTP/1.2\r\nHost: svc\r\nX-Mixed-Case: A\r\nConnection: keep-alive, Foo\r\n\r\n";
  auto s = p.parse(in);
  REQUIRE(s.event == Event::head);
  CHECK(s.consumed == in.size());
  const auto& h = p.head();
  CHECK(h.raw.find("HTTP/1.1\r\n") != std::string::npos);  // 1.2 served as 1.1
  REQUIRE(h.fields.size() == 3);
  CHECK(h.fields[1].name == "X-Mixed-Case");
  CHECK(h.get("x-mixed-case") == std::string_view("A"));
  CHECK(h.has_token("connection", "foo"));
  CHECK_FALSE(h.has_token("connection", "close"));
  CHECK(h.target == "/x?y=1");
  CHECK(p.keep_alive());
}

TEST_CASE("keep-alive follows the version and Connection") {
  Http1Parser p10(Http1Parser::Kind::request, {});
  REQUIRE(p10.parse("GET / HTTP/1.0\r\n\r\n").event == Event::head);
  CHECK_FALSE(p10.keep_alive());
  Http1Parser p10ka(Http1Parser::Kind::request, {});
  REQUIRE(p10ka.parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").event == Event::head);
  CHECK(p10ka.keep_alive());
  Http1Parser p11(Http1Parser::Kind::request, {});
  REQUIRE(p11.parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").event == Event::head);
  CHECK_FALSE(p11.keep_alive());
}

TEST_CASE("responses: length, chunked, until close, HEAD, 204 and 304") {
  {
    Http1Parser p(Http1Parser::Kind::response, {});
    auto r = run(p, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n"
                    "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
    CHECK(r.heads == std::vector<std::string>{"200", "204", "304"});
    CHECK(r.bodies == std::vector<std::string>{"ok", "", ""});
  }
  {
    Http1Parser p(Http1Parser::Kind::response, {});
    auto r = run(p, "HTTP/1.1 200 OK\r\n\r\nuntil the end", 4, true);
    CHECK_FALSE(r.error);
    CHECK(r.bodies == std::vector<std::string>{"until the end"});
  }
  {
    Http1Parser p(Http1Parser::Kind::response, {});
    p.expect_no_body(true);
    auto r = run(p, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
    CHECK(r.completes == 1);
    CHECK(r.bodies == std::vector<std::string>{""});
  }
  {
    Http1Parser p(Http1Parser::Kind::response, {});
    auto r = run(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n", 3);
    CHECK(r.bodies == std::vector<std::string>{"wxyz"});
  }
}

TEST_CASE("a truncated body is an error at close; a clean close between messages is not") {
  Http1Parser p(Http1Parser::Kind::response, {});
  auto r = run(p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 1 << 20, true);
  CHECK(r.error);
  Http1Parser q(Http1Parser::Kind::response, {});
  auto s = run(q, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", 1 << 20, true);
  CHECK_FALSE(s.error);
  CHECK(s.completes == 1);
}

TEST_CASE("framing errors stop the parser") {
  {
    Http1Parser p(Http1Parser::Kind::request, {});
    auto r = run(p, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    CHECK(r.error);
    CHECK(r.status == HeadVerdict::Status::bad_request);
  }
  {
    Http1Parser p(Http1Parser::Kind::request, {});
    auto r = run(p, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
    CHECK(r.error);
    CHECK(p.parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n").event == Event::error);  // stays failed
  }
  {
    Http1Parser p(Http1Parser::Kind::response, {});
    auto r = run(p, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    CHECK(r.error);
  }
  {
    Http1Parser p(Http1Parser::Kind::request, {64, 100});
    auto r = run(p, "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(100, 'a') + "\r\n\r\n", 10);
    CHECK(r.error);
    CHECK(r.status == HeadVerdict::Status::too_large);
  }
}

TEST_CASE("any token is a method, with or without a body (llhttp's own list does not apply)") {
  for (std::size_t step : {std::size_t{1}, std::size_t{7}, std::size_t{1} << 20}) {
    Http1Parser p(Http1Parser::Kind::request, {});
    const auto r = run(p,
                       "PURGE /a HTTP/1.1\r\nHost: x\r\n\r\n"
                       "X-CUSTOM /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                       "REPORT /c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
                       step);
    INFO("step " << step);
    CHECK_FALSE(r.error);
    CHECK(r.heads == std::vector<std::string>{"PURGE /a", "X-CUSTOM /b", "REPORT /c"});
    CHECK(r.completes == 3);
  }
}

TEST_CASE("a response body with a length is counted, one without until the close") {
  Http1Parser p(Http1Parser::Kind::response, {});
  const auto r = run(p, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n\r\nrest of it", 3, true);
  CHECK_FALSE(r.error);
  CHECK(r.completes == 2);
  CHECK(p.keep_alive() == false);  // the second ended with the connection
}
