// Trailer fields of chunked messages (Http1Parser::trailers()): collected for requests
// and responses, whatever the input's pieces, within the head's byte limit, and never
// carried into the next message.
#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "proxy/http1_codec.hpp"

using namespace meshd::proxy;
using Event = Http1Parser::Event;
using Fields = std::vector<std::pair<std::string, std::string>>;

namespace {

struct Message {
  std::string head;  // method+target or status
  std::string body;
  Fields trailers;   // trailers() at message_complete
};

struct Parsed {
  std::vector<Message> messages;
  bool error = false;
  HeadVerdict::Status status = HeadVerdict::Status::ok;
  Fields trailers_after_next_head;  // trailers() right after the second message's head
};

// Feeds `pieces` one after the other (each appended when the parser needs more), as a
// connection's reads would.
Parsed run(Http1Parser& p, const std::vector<std::string>& pieces) {
  Parsed out;
  std::string buffer;
  std::size_t next = 0;
  Message current;
  for (int guard = 0; guard < 100000; ++guard) {
    const auto s = p.parse(buffer);
    if (s.event == Event::body) current.body += p.body();  // a view into the buffer: use it first
    buffer.erase(0, s.consumed);
    switch (s.event) {
      case Event::need_more:
        if (next >= pieces.size()) return out;
        buffer += pieces[next++];
        break;
      case Event::head:
        current.head = p.head().status != 0 ? std::to_string(p.head().status)
                                             : std::string(p.head().method) + " " + std::string(p.head().target);
        if (out.messages.size() == 1) {
          for (const auto& t : p.trailers()) out.trailers_after_next_head.emplace_back(t.name, t.value);
        }
        break;
      case Event::body:
        break;
      case Event::message_complete:
        for (const auto& t : p.trailers()) current.trailers.emplace_back(t.name, t.value);
        out.messages.push_back(std::move(current));
        current = {};
        break;
      case Event::error:
        out.error = true;
        out.status = p.error_status();
        return out;
    }
  }
  FAIL("the parser did not stop");
  return out;
}

Parsed run_whole(Http1Parser::Kind kind, const std::string& input, HeadLimits limits = {}) {
  Http1Parser p(kind, limits);
  return run(p, {input});
}

// Every way of cutting `input` in two, and byte by byte: the same result each time.
void check_every_split(Http1Parser::Kind kind, const std::string& input, const Fields& want) {
  for (std::size_t cut = 1; cut < input.size(); ++cut) {
    Http1Parser p(kind, {});
    const auto r = run(p, {input.substr(0, cut), input.substr(cut)});
    INFO("cut at " << cut << ": [" << input.substr(0, cut) << "|" << input.substr(cut) << "]");
    REQUIRE_FALSE(r.error);
    REQUIRE(r.messages.size() == 1);
    CHECK(r.messages[0].trailers == want);
  }
  std::vector<std::string> bytes;
  for (char c : input) bytes.emplace_back(1, c);
  Http1Parser p(kind, {});
  const auto r = run(p, bytes);
  INFO("byte by byte");
  REQUIRE_FALSE(r.error);
  REQUIRE(r.messages.size() == 1);
  CHECK(r.messages[0].trailers == want);
}

const std::string kRequestHead = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
const std::string kResponseHead = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

}  // namespace

TEST_CASE("trailers: a chunked request with one trailer field") {
  const auto r = run_whole(Http1Parser::Kind::request, kRequestHead + "3\r\nabc\r\n0\r\nX-Checksum: 123\r\n\r\n");
  REQUIRE_FALSE(r.error);
  REQUIRE(r.messages.size() == 1);
  CHECK(r.messages[0].head == "POST /up");
  CHECK(r.messages[0].body == "abc");
  CHECK(r.messages[0].trailers == Fields{{"X-Checksum", "123"}});  // the name as sent
}

TEST_CASE("trailers: a chunked request and a chunked response with two trailer fields") {
  const std::string trailers = "0\r\nX-Checksum: 123\r\ngrpc-status:  0 \r\n\r\n";
  const Fields want{{"X-Checksum", "123"}, {"grpc-status", "0"}};  // values trimmed
  const auto req = run_whole(Http1Parser::Kind::request, kRequestHead + "2\r\nab\r\n" + trailers);
  REQUIRE_FALSE(req.error);
  REQUIRE(req.messages.size() == 1);
  CHECK(req.messages[0].body == "ab");
  CHECK(req.messages[0].trailers == want);

  const auto resp = run_whole(Http1Parser::Kind::response, kResponseHead + "5\r\nhello\r\n" + trailers);
  REQUIRE_FALSE(resp.error);
  REQUIRE(resp.messages.size() == 1);
  CHECK(resp.messages[0].head == "200");
  CHECK(resp.messages[0].body == "hello");
  CHECK(resp.messages[0].trailers == want);
}

TEST_CASE("trailers: a response trailer with an empty value keeps the next field separate") {
  const auto r = run_whole(Http1Parser::Kind::response, kResponseHead + "1\r\na\r\n0\r\nX-Empty:\r\nX-After: 1\r\n\r\n");
  REQUIRE_FALSE(r.error);
  REQUIRE(r.messages.size() == 1);
  CHECK(r.messages[0].trailers == Fields{{"X-Empty", ""}, {"X-After", "1"}});
}

TEST_CASE("trailers: fields split across parse() inputs, at every byte") {
  SECTION("request, one field") {
    check_every_split(Http1Parser::Kind::request, kRequestHead + "3\r\nabc\r\n0\r\nX-Checksum: 123\r\n\r\n",
                      {{"X-Checksum", "123"}});
  }
  SECTION("response, two fields") {
    check_every_split(Http1Parser::Kind::response,
                      kResponseHead + "5\r\nhello\r\n0\r\nX-Checksum: 123\r\ngrpc-message: all good\r\n\r\n",
                      {{"X-Checksum", "123"}, {"grpc-message", "all good"}});
  }
}

TEST_CASE("trailers: over the head byte limit is an error") {
  const HeadLimits limits{256, 100};
  const std::string big(300, 'v');
  const auto req =
      run_whole(Http1Parser::Kind::request, kRequestHead + "1\r\na\r\n0\r\nX-Big: " + big + "\r\n\r\n", limits);
  CHECK(req.error);
  CHECK(req.messages.empty());
  const auto resp =
      run_whole(Http1Parser::Kind::response, kResponseHead + "1\r\na\r\n0\r\nX-Big: " + big + "\r\n\r\n", limits);
  CHECK(resp.error);
  CHECK(resp.messages.empty());

  // Many small fields add up.
  std::string many;
  for (int i = 0; i < 40; ++i) many += "X-F" + std::to_string(i) + ": 12345\r\n";
  const auto sum = run_whole(Http1Parser::Kind::request, kRequestHead + "1\r\na\r\n0\r\n" + many + "\r\n", limits);
  CHECK(sum.error);

  // Fed in small pieces the limit holds too.
  Http1Parser p(Http1Parser::Kind::request, limits);
  std::vector<std::string> pieces{kRequestHead, "1\r\na\r\n0\r\nX-Big: "};
  for (int i = 0; i < 30; ++i) pieces.push_back(std::string(10, 'v'));
  pieces.push_back("\r\n\r\n");
  CHECK(run(p, pieces).error);

  // Under the limit it is fine.
  const auto ok = run_whole(Http1Parser::Kind::request,
                            kRequestHead + "1\r\na\r\n0\r\nX-Small: " + std::string(100, 'v') + "\r\n\r\n", limits);
  REQUIRE_FALSE(ok.error);
  REQUIRE(ok.messages.size() == 1);
  CHECK(ok.messages[0].trailers == Fields{{"X-Small", std::string(100, 'v')}});
}

TEST_CASE("trailers: a message without trailers has none, and one's trailers do not leak into the next") {
  SECTION("no trailers at all") {
    const auto r = run_whole(Http1Parser::Kind::request,
                             kRequestHead + "3\r\nabc\r\n0\r\n\r\n" +
                                 "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi" +
                                 "GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE_FALSE(r.error);
    REQUIRE(r.messages.size() == 3);
    for (const auto& m : r.messages) CHECK(m.trailers.empty());
  }
  SECTION("requests: chunked with trailers, then chunked without, then a length, then none") {
    for (const bool whole : {true, false}) {
      const std::string input = kRequestHead + "3\r\nabc\r\n0\r\nX-Checksum: 123\r\n\r\n" + kRequestHead +
                                "2\r\nde\r\n0\r\n\r\n" + "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi" +
                                "GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
      Http1Parser p(Http1Parser::Kind::request, {});
      std::vector<std::string> pieces;
      if (whole) {
        pieces.push_back(input);
      } else {
        for (std::size_t i = 0; i < input.size(); i += 5) pieces.push_back(input.substr(i, 5));
      }
      const auto r = run(p, pieces);
      INFO((whole ? "at once" : "in pieces of 5"));
      REQUIRE_FALSE(r.error);
      REQUIRE(r.messages.size() == 4);
      CHECK(r.messages[0].trailers == Fields{{"X-Checksum", "123"}});
      CHECK(r.trailers_after_next_head.empty());  // gone once the next head is parsed
      CHECK(r.messages[1].body == "de");
      CHECK(r.messages[1].trailers.empty());
      CHECK(r.messages[2].trailers.empty());
      CHECK(r.messages[3].trailers.empty());
    }
  }
  SECTION("responses: chunked with trailers, then a length, then chunked with others") {
    const auto r = run_whole(Http1Parser::Kind::response,
                             kResponseHead + "1\r\na\r\n0\r\nX-One: 1\r\nX-Two: 2\r\n\r\n" +
                                 "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb" + kResponseHead +
                                 "1\r\nc\r\n0\r\nX-Three: 3\r\n\r\n");
    REQUIRE_FALSE(r.error);
    REQUIRE(r.messages.size() == 3);
    CHECK(r.messages[0].trailers == Fields{{"X-One", "1"}, {"X-Two", "2"}});
    CHECK(r.messages[1].trailers.empty());
    CHECK(r.messages[2].trailers == Fields{{"X-Three", "3"}});
  }
}

TEST_CASE("trailers: more fields than the head's count limit is an error, as for the head") {
  const HeadLimits limits{60 * 1024, 3};
  std::string three, four;
  for (int i = 0; i < 3; ++i) three += "X-T" + std::to_string(i) + ": v\r\n";
  four = three + "X-T3: v\r\n";
  const auto ok = run_whole(Http1Parser::Kind::request, kRequestHead + "1\r\na\r\n0\r\n" + three + "\r\n", limits);
  REQUIRE_FALSE(ok.error);
  REQUIRE(ok.messages.size() == 1);
  CHECK(ok.messages[0].trailers.size() == 3);
  CHECK(run_whole(Http1Parser::Kind::request, kRequestHead + "1\r\na\r\n0\r\n" + four + "\r\n", limits).error);
  // The count starts again with each message.
  Http1Parser p(Http1Parser::Kind::response, limits);
  const std::string message = kResponseHead + "1\r\na\r\n0\r\n" + three + "\r\n";
  const auto two = run(p, {message + message});
  REQUIRE_FALSE(two.error);
  CHECK(two.messages.size() == 2);
}
