#include <catch2/catch.hpp>

#include "proxy/http1_codec.hpp"
#include "proxy/http1_write.hpp"

using namespace meshd::proxy;

namespace {
MessageHead parse_head(Http1Parser& p, const std::string& text) {
  auto step = p.parse(text);
  REQUIRE(step.event == Http1Parser::Event::head);
  return p.head();
}

// The neutral request as the HTTP/1.1 server adapter makes it (end-to-end fields).
struct Neutral {
  std::vector<FieldView> fields;
  RequestHead head;
  OutgoingRequest out;
  explicit Neutral(const MessageHead& h) {
    end_to_end_fields(h, true, fields);
    head.method = h.method;
    head.fields = fields;
    out.head = &head;
  }
};

ResponseHead neutral_response(const MessageHead& h, std::vector<FieldView>& fields) {
  end_to_end_fields(h, false, fields);
  ResponseHead r;
  r.status = h.status;
  r.reason = h.reason;
  r.fields = fields;
  return r;
}
}  // namespace

TEST_CASE("the upstream request head drops hop-by-hop fields and sets forwarding fields") {
  Http1Parser p(Http1Parser::Kind::request, {});
  const auto head = parse_head(p,
                               "POST http://svc.local/a HTTP/1.1\r\nHost: ignored\r\nConnection: keep-alive, X-Hop\r\n"
                               "X-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n"
                               "Upgrade: h2c\r\nHTTP2-Settings: x\r\nExpect: 100-continue\r\nX-Case-Kept: v\r\n"
                               "X-Forwarded-For: 10.0.0.1\r\nTrailer: X-Sum\r\n\r\n");
  std::string out;
  Neutral n(head);
  auto& r = n.out;
  r.path = "/a";
  r.authority = "svc.local";
  r.forwarded_for = "127.0.0.1";
  r.request_id = "id-1";
  r.has_body = true;
  build_request_head(r, out);
  CHECK(out.rfind("POST /a HTTP/1.1\r\nHost: svc.local\r\n", 0) == 0);
  for (const char* gone : {"X-Hop", "Keep-Alive", "TE:", "Upgrade", "HTTP2-Settings", "Expect", "Connection"}) {
    INFO(gone);
    CHECK(out.find(gone) == std::string::npos);
  }
  CHECK(out.find("X-Case-Kept: v\r\n") != std::string::npos);
  CHECK(out.find("Trailer: X-Sum\r\n") != std::string::npos);  // end-to-end, kept
  CHECK(out.find("X-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n") != std::string::npos);
  CHECK(out.find("x-forwarded-proto: http\r\n") != std::string::npos);
  CHECK(out.find("x-request-id: id-1\r\n") != std::string::npos);
  CHECK(out.find("Transfer-Encoding: chunked\r\n\r\n") != std::string::npos);

  std::string with_length;
  r.length = 5;
  build_request_head(r, with_length);
  CHECK(with_length.find("Content-Length: 5\r\n\r\n") != std::string::npos);
  CHECK(with_length.find("Transfer-Encoding") == std::string::npos);
}

TEST_CASE("every Connection header's named fields are dropped, case-insensitively") {
  Http1Parser p(Http1Parser::Kind::request, {});
  const auto head = parse_head(p,
                               "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-One\r\nX-One: 1\r\n"
                               "connection: x-two , close\r\nX-TWO: 2\r\nX-Three: 3\r\n\r\n");
  std::string out;
  Neutral n(head);
  n.out.path = "/";
  n.out.authority = "a";
  build_request_head(n.out, out);
  CHECK(out.find("X-One") == std::string::npos);
  CHECK(out.find("X-TWO") == std::string::npos);
  CHECK(out.find("X-Three: 3\r\n") != std::string::npos);
}

TEST_CASE("the downstream response head re-frames the body") {
  Http1Parser p(Http1Parser::Kind::response, {});
  const auto head = parse_head(p, "HTTP/1.1 201 Made\r\nContent-Length: 3\r\nConnection: close\r\nX-A: b\r\n\r\n");
  std::string out;
  std::vector<FieldView> fields;
  const ResponseHead neutral = neutral_response(head, fields);
  DownstreamResponse r;
  r.framing = DownstreamResponse::Framing::chunked;
  build_response_head(neutral, r, out);
  CHECK(out == "HTTP/1.1 201 Made\r\nX-A: b\r\nTransfer-Encoding: chunked\r\n\r\n");
  std::string closing;
  r.framing = DownstreamResponse::Framing::length;
  r.content_length = 3;
  r.close = true;
  build_response_head(neutral, r, closing);
  CHECK(closing == "HTTP/1.1 201 Made\r\nX-A: b\r\nContent-Length: 3\r\nConnection: close\r\n\r\n");
  CHECK(chunk_header(255) == "ff\r\n");
  CHECK(reason_phrase(504) == "Gateway Timeout");
}
