// The HTTP/2 server codec (proxy/http2_server_codec.hpp) against nghttp2's own
// client session in memory (a real peer, not a fake that shares the codec's
// assumptions) and against frames written by hand for what a client must not do.
#include <catch2/catch.hpp>

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "proxy/http2_server_codec.hpp"

using namespace meshd::proxy;

namespace {

// The adapter's side, recording what the codec said.
struct Recorder : Http2ServerEvents {
  struct Req {
    std::string method, scheme, authority, path;
    std::vector<std::pair<std::string, std::string>> fields;
    bool has_body = false;
    bool grpc = false;
  };
  std::map<std::int32_t, Req> requests;
  std::vector<std::int32_t> bodies, writable;
  std::map<std::int32_t, std::uint32_t> closed;
  void on_request(std::int32_t s, const RequestHead& h) override {
    Req r{std::string(h.method), std::string(h.scheme), std::string(h.authority), std::string(h.path), {},
          h.has_body, h.grpc};
    for (const auto& f : h.fields) r.fields.emplace_back(f.name, f.value);
    requests[s] = r;
  }
  void on_body(std::int32_t s) override { bodies.push_back(s); }
  void on_writable(std::int32_t s) override { writable.push_back(s); }
  void on_close(std::int32_t s, std::uint32_t code) override { closed[s] = code; }
};

// nghttp2's client: requests in, the server's bytes out to it.
struct Client {
  struct Resp {
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    bool ended = false;
    std::uint32_t reset = 0;
  };
  nghttp2_session* session = nullptr;
  std::map<std::int32_t, Resp> responses;
  std::map<std::int32_t, std::string> uploads;  // request bodies to send
  std::uint32_t goaway = 0xffffffff;

  Client() {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(
        cb, [](nghttp2_session*, const nghttp2_frame* f, const std::uint8_t* n, std::size_t nl, const std::uint8_t* v,
               std::size_t vl, std::uint8_t, void* u) {
          static_cast<Client*>(u)->responses[f->hd.stream_id].headers.emplace_back(
              std::string(reinterpret_cast<const char*>(n), nl), std::string(reinterpret_cast<const char*>(v), vl));
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cb, [](nghttp2_session*, std::uint8_t, std::int32_t s, const std::uint8_t* d, std::size_t l, void* u) {
          static_cast<Client*>(u)->responses[s].body.append(reinterpret_cast<const char*>(d), l);
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, [](nghttp2_session*, const nghttp2_frame* f, void* u) {
      auto* c = static_cast<Client*>(u);
      if (f->hd.type == NGHTTP2_GOAWAY) c->goaway = f->goaway.error_code;
      if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        c->responses[f->hd.stream_id].ended = true;
      }
      return 0;
    });
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, [](nghttp2_session*, std::int32_t s, std::uint32_t e,
                                                                  void* u) {
      if (e != 0) static_cast<Client*>(u)->responses[s].reset = e;
      return 0;
    });
    nghttp2_session_client_new(&session, cb, this);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~Client() { nghttp2_session_del(session); }

  std::int32_t request(std::string method, std::string path, std::vector<std::pair<std::string, std::string>> extra = {},
                       const std::string* body = nullptr) {
    std::vector<std::pair<std::string, std::string>> all = {
        {":method", method}, {":scheme", "http"}, {":authority", "svc.local"}, {":path", path}};
    all.insert(all.end(), extra.begin(), extra.end());
    std::vector<nghttp2_nv> nva;
    for (auto& [n, v] : all) {
      nva.push_back({reinterpret_cast<std::uint8_t*>(n.data()), reinterpret_cast<std::uint8_t*>(v.data()), n.size(),
                     v.size(), NGHTTP2_NV_FLAG_NONE});
    }
    nghttp2_data_provider provider{};
    provider.read_callback = [](nghttp2_session*, std::int32_t s, std::uint8_t* buf, std::size_t len, std::uint32_t* flags,
                                nghttp2_data_source*, void* u) -> ssize_t {
      auto& up = static_cast<Client*>(u)->uploads[s];
      const std::size_t n = std::min(len, up.size());
      std::memcpy(buf, up.data(), n);
      up.erase(0, n);
      if (up.empty()) *flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(n);
    };
    const auto id = nghttp2_submit_request(session, nullptr, nva.data(), nva.size(), body ? &provider : nullptr, nullptr);
    if (body) uploads[id] = *body;
    return id;
  }
  std::string output() {
    std::string out;
    for (;;) {
      const std::uint8_t* d = nullptr;
      const auto n = nghttp2_session_mem_send(session, &d);
      if (n <= 0) break;
      out.append(reinterpret_cast<const char*>(d), static_cast<std::size_t>(n));
    }
    return out;
  }
  void receive(std::string_view bytes) {
    REQUIRE(nghttp2_session_mem_recv(session, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()) ==
            static_cast<ssize_t>(bytes.size()));
  }
  std::string header(std::int32_t s, const std::string& name) {
    for (auto& [n, v] : responses[s].headers) {
      if (n == name) return v;
    }
    return "";
  }
};

// Runs both sides until neither has anything to send (bounded).
void pump(Client& c, Http2ServerCodec& server) {
  for (int i = 0; i < 100; ++i) {
    const auto up = c.output();
    if (!up.empty()) server.receive(up);
    const auto down = std::string(server.output());
    if (!down.empty()) c.receive(down);
    if (up.empty() && down.empty()) return;
  }
  FAIL("the exchange did not settle");
}

// Frames by hand: a 9-byte header and a payload.
std::string frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream, std::string_view payload) {
  std::string f;
  f += static_cast<char>(payload.size() >> 16);
  f += static_cast<char>(payload.size() >> 8);
  f += static_cast<char>(payload.size());
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  f += static_cast<char>(stream >> 24);
  f += static_cast<char>(stream >> 16);
  f += static_cast<char>(stream >> 8);
  f += static_cast<char>(stream);
  f += payload;
  return f;
}
// HPACK: a literal field without indexing, new name, no Huffman (RFC 7541 §6.2.2).
std::string literal(std::string_view name, std::string_view value) {
  std::string b;
  b += '\0';
  b += static_cast<char>(name.size());
  b += name;
  b += static_cast<char>(value.size());
  b += value;
  return b;
}
std::string get_block() {
  return literal(":method", "GET") + literal(":scheme", "http") + literal(":path", "/") + literal(":authority", "a");
}
constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct Frame {
  std::uint8_t type;
  std::uint8_t flags;
  std::uint32_t stream;
  std::string payload;
};
std::vector<Frame> frames(std::string_view bytes) {
  std::vector<Frame> out;
  while (bytes.size() >= 9) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    const std::size_t len = (std::size_t{p[0]} << 16) | (std::size_t{p[1]} << 8) | p[2];
    if (bytes.size() < 9 + len) break;
    out.push_back({p[3], p[4], ((std::uint32_t{p[5]} & 0x7f) << 24) | (std::uint32_t{p[6]} << 16) | (std::uint32_t{p[7]} << 8) | p[8],
                   std::string(bytes.substr(9, len))});
    bytes.remove_prefix(9 + len);
  }
  return out;
}
std::uint32_t be32(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}
// The RST_STREAM error codes in the server's output, by stream.
std::map<std::uint32_t, std::uint32_t> resets(const std::vector<Frame>& out) {
  std::map<std::uint32_t, std::uint32_t> rst;
  for (const auto& f : out) {
    if (f.type == 0x3) rst[f.stream] = be32(f.payload);
  }
  return rst;
}

}  // namespace

TEST_CASE("http2 codec: a GET becomes a RequestHead; the response goes back whole") {
  Recorder r;
  Http2ServerCodec server({}, r);
  Client c;
  const auto id = c.request("GET", "/a?b=1", {{"x-custom", "Yes"}, {"content-type", "application/grpc+proto"}});
  pump(c, server);
  REQUIRE(r.requests.count(id) == 1);
  const auto& q = r.requests[id];
  CHECK(q.method == "GET");
  CHECK(q.scheme == "http");
  CHECK(q.authority == "svc.local");
  CHECK(q.path == "/a?b=1");
  CHECK_FALSE(q.has_body);
  CHECK(q.grpc);
  REQUIRE(q.fields.size() == 2);
  CHECK(q.fields[0] == std::pair<std::string, std::string>{"x-custom", "Yes"});

  std::vector<Field> fields = {{"Content-Type", "text/plain"}, {"Connection", "keep-alive"}, {"X-Up", "1"}};
  ResponseHead head;
  head.status = 200;
  head.fields = fields;
  REQUIRE(server.submit_head(id, head, false));
  REQUIRE(server.submit_data(id, "hello ", false));
  REQUIRE(server.submit_data(id, "world", true));
  pump(c, server);
  CHECK(c.header(id, ":status") == "200");
  CHECK(c.header(id, "content-type") == "text/plain");  // lowercased
  CHECK(c.header(id, "x-up") == "1");
  CHECK(c.header(id, "connection").empty());  // hop-by-hop, not HTTP/2's
  CHECK(c.responses[id].body == "hello world");
  CHECK(c.responses[id].ended);
  CHECK(r.closed.count(id) == 1);
  CHECK(r.closed[id] == 0);
  CHECK(server.open_streams() == 0);
}

TEST_CASE("http2 codec: a request body larger than the windows comes in whole as it is taken; response trailers go out") {
  Recorder r;
  Http2Limits limits;
  limits.initial_stream_window = 16384;
  Http2ServerCodec server(limits, r);
  Client c;
  const std::string body(100000, 'b');  // more than the stream's window: only what is taken opens it
  const auto id = c.request("POST", "/up", {{"content-length", std::to_string(body.size())}}, &body);
  pump(c, server);
  REQUIRE(r.requests.count(id) == 1);
  CHECK(r.requests[id].has_body);
  std::string got;
  bool ended = false;
  for (int i = 0; i < 100 && !ended; ++i) {
    while (auto ev = server.take_body(id)) {
      if (ev->kind == BodyEvent::Kind::data) got += ev->data;
      if (ev->kind == BodyEvent::Kind::end) ended = true;
    }
    pump(c, server);
  }
  CHECK(ended);
  CHECK(got.size() == body.size());
  ResponseHead head;
  head.status = 200;
  REQUIRE(server.submit_head(id, head, false));
  REQUIRE(server.submit_data(id, "ok", false));
  std::vector<Field> trailers = {{"Grpc-Status", "0"}};
  REQUIRE(server.submit_trailers(id, trailers));
  pump(c, server);
  CHECK(c.responses[id].body == "ok");
  CHECK(c.header(id, "grpc-status") == "0");
  CHECK(c.responses[id].ended);
}

TEST_CASE("http2 codec: the body held back by a slow reader is bounded by the stream window") {
  Recorder r;
  Http2Limits limits;
  limits.initial_stream_window = 16384;
  Http2ServerCodec server(limits, r);
  Client c;
  const std::string body(1 << 20, 'x');
  const auto id = c.request("POST", "/up", {}, &body);
  pump(c, server);
  pump(c, server);
  // Nothing taken: the client cannot have sent more than its window. Its first flight
  // may use the protocol's initial 65,535 bytes (our SETTINGS were not yet applied).
  auto piece = server.take_body(id);
  REQUIRE(piece);
  REQUIRE(piece->kind == BodyEvent::Kind::data);
  CHECK(piece->data.size() <= 65535);
  // Taken: the window opens by what was taken, the stream's now 16 KiB.
  pump(c, server);
  pump(c, server);
  auto next = server.take_body(id);
  REQUIRE(next);
  CHECK(next->data.size() <= 16384);
  CHECK(next->data.size() > 0);
}

TEST_CASE("http2 codec: a stream over the advertised limit is refused, the connection kept") {
  Recorder r;
  Http2Limits limits;
  limits.max_concurrent_streams = 3;
  Http2ServerCodec server(limits, r);
  // The client says what it must, ACKs the server's SETTINGS, then opens 5 streams
  // in one go without waiting for any answer.
  std::string in(kPreface);
  in += frame(0x4, 0, 0, "");     // SETTINGS
  in += frame(0x4, 0x1, 0, "");   // SETTINGS ACK (of the server's)
  for (std::uint32_t s = 1; s <= 9; s += 2) in += frame(0x1, 0x5, s, get_block());  // HEADERS, END_STREAM|END_HEADERS
  CHECK(server.output().size() > 0);  // the server's SETTINGS go first
  REQUIRE(server.receive(in));
  const auto out = frames(server.output());
  auto rst = resets(out);
  const bool goaway = std::any_of(out.begin(), out.end(), [](const Frame& f) { return f.type == 0x7; });
  CHECK_FALSE(goaway);
  CHECK(r.requests.size() == 3);
  CHECK(rst.size() == 2);
  CHECK(rst[7] == h2_error::refused_stream);
  CHECK(rst[9] == h2_error::refused_stream);
  // The server told the client the real limit.
  Http2ServerCodec fresh(limits, r);
  const auto settings = frames(fresh.output());
  REQUIRE(!settings.empty());
  REQUIRE(settings[0].type == 0x4);
  bool found = false;
  for (std::size_t at = 0; at + 6 <= settings[0].payload.size(); at += 6) {
    if (settings[0].payload[at] == 0 && settings[0].payload[at + 1] == 3) {
      found = true;
      CHECK(be32(std::string_view(settings[0].payload).substr(at + 2, 4)) == 3);
    }
  }
  CHECK(found);
}

TEST_CASE("http2 codec: rapid reset gets GOAWAY ENHANCE_YOUR_CALM") {
  Recorder r;
  Http2Limits limits;
  limits.max_resets_per_second = 20;
  Http2ServerCodec server(limits, r);
  std::string in(kPreface);
  in += frame(0x4, 0, 0, "");
  in += frame(0x4, 0x1, 0, "");
  const std::string cancel("\0\0\0\x08", 4);
  for (std::uint32_t s = 1; s < 200; s += 2) {
    in += frame(0x1, 0x4, s, get_block());  // HEADERS, END_HEADERS
    in += frame(0x3, 0, s, cancel);         // RST_STREAM CANCEL
  }
  (void)server.output();
  CHECK_FALSE(server.receive(in));
  CHECK(server.why() == Http2ServerCodec::End::rapid_reset);
  std::uint32_t code = 0xffffffff;
  for (const auto& f : frames(server.output())) {
    if (f.type == 0x7) code = be32(std::string_view(f.payload).substr(4, 4));
  }
  CHECK(code == h2_error::enhance_your_calm);
}

TEST_CASE("http2 codec: a header block in too many CONTINUATION frames ends the connection") {
  Recorder r;
  Http2ServerCodec server({}, r);
  std::string in(kPreface);
  in += frame(0x4, 0, 0, "");
  const auto block = get_block();
  in += frame(0x1, 0x1, 1, block.substr(0, 4));  // HEADERS without END_HEADERS
  for (int i = 0; i < 40; ++i) in += frame(0x9, 0, 1, "");  // empty CONTINUATIONs
  (void)server.output();
  CHECK_FALSE(server.receive(in));
  CHECK(server.why() == Http2ServerCodec::End::header_too_large);
}

TEST_CASE("http2 codec: a header list over the limit ends the connection") {
  Recorder r;
  Http2Limits limits;
  limits.max_header_list_bytes = 1024;
  Http2ServerCodec server(limits, r);
  std::string in(kPreface);
  in += frame(0x4, 0, 0, "");
  std::string block = get_block();
  for (int i = 0; i < 20; ++i) block += literal("x-pad-" + std::to_string(i), std::string(100, 'p'));
  in += frame(0x1, 0x5, 1, block);
  (void)server.output();
  CHECK_FALSE(server.receive(in));
  CHECK(server.why() == Http2ServerCodec::End::header_too_large);
  CHECK(r.requests.empty());
}

TEST_CASE("http2 codec: PING and empty DATA floods get GOAWAY ENHANCE_YOUR_CALM") {
  for (const bool ping : {true, false}) {
    Recorder r;
    Http2Limits limits;
    limits.max_control_frames_per_second = 50;
    Http2ServerCodec server(limits, r);
    std::string in(kPreface);
    in += frame(0x4, 0, 0, "");
    if (!ping) in += frame(0x1, 0x4, 1, get_block());  // a POST-like stream left open
    for (int i = 0; i < 200; ++i) in += ping ? frame(0x6, 0, 0, std::string(8, 'p')) : frame(0x0, 0, 1, "");
    (void)server.output();
    CHECK_FALSE(server.receive(in));
    CHECK(server.why() == Http2ServerCodec::End::flood);
  }
}

TEST_CASE("http2 codec: a client breaking the protocol ends the connection with PROTOCOL_ERROR") {
  Recorder r;
  Http2ServerCodec server({}, r);
  (void)server.output();
  CHECK_FALSE(server.receive("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
  CHECK(server.why() == Http2ServerCodec::End::protocol_error);
}

TEST_CASE("http2 codec: a malformed request is reset by nghttp2 and never reaches the adapter") {
  Recorder r;
  Http2ServerCodec server({}, r);
  std::string in(kPreface);
  in += frame(0x4, 0, 0, "");
  in += frame(0x1, 0x5, 1, get_block() + literal("connection", "close"));  // RFC 9113 §8.2.2
  in += frame(0x1, 0x5, 3, get_block());
  (void)server.output();
  REQUIRE(server.receive(in));
  auto rst = resets(frames(server.output()));
  CHECK(rst[1] == h2_error::protocol_error);
  CHECK(r.requests.count(1) == 0);
  CHECK(r.closed.count(1) == 0);  // never the adapter's
  CHECK(r.requests.count(3) == 1);  // the connection goes on
}

TEST_CASE("http2 codec: an interim 103 goes out before the final head, and content-length where the framing was") {
  Recorder r;
  Http2ServerCodec server({}, r);
  Client c;
  const auto id = c.request("GET", "/hints");
  pump(c, server);
  std::vector<Field> hints = {{"Link", "</style.css>; rel=preload"}};
  ResponseHead interim;
  interim.status = 103;
  interim.fields = hints;
  REQUIRE(server.submit_interim(id, interim));
  ResponseHead not_interim;
  not_interim.status = 101;  // a tunnel's, not HTTP/2's
  CHECK_FALSE(server.submit_interim(id, not_interim));
  std::vector<Field> fields = {{"X-A", "1"}, {"Content-Length", "999"}, {"X-B", "2"}};
  ResponseHead head;
  head.status = 200;
  head.fields = fields;
  head.length = 2;
  head.framing_at = 1;  // between X-A and X-B
  REQUIRE(server.submit_head(id, head, false));
  REQUIRE(server.submit_data(id, "ok", true));
  pump(c, server);
  const auto& h = c.responses[id].headers;
  std::vector<std::string> names;
  for (const auto& [n, v] : h) names.push_back(n + "=" + v);
  const std::vector<std::string> want = {":status=103", "link=</style.css>; rel=preload", ":status=200", "x-a=1",
                                         "content-length=2", "x-b=2"};
  CHECK(names == want);
  CHECK(c.responses[id].body == "ok");
  CHECK(c.responses[id].ended);
}

TEST_CASE("http2 codec: output comes in pieces of at most kOutputCap; on_writable says when submitted data left") {
  Recorder r;
  Http2ServerCodec server({}, r);
  Client c;
  // The client opens its windows wide, so that only the codec's cap bounds a write.
  const nghttp2_settings_entry wide[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24}};
  nghttp2_submit_settings(c.session, NGHTTP2_FLAG_NONE, wide, 1);
  nghttp2_session_set_local_window_size(c.session, NGHTTP2_FLAG_NONE, 0, 1 << 26);
  const auto id = c.request("GET", "/big");
  pump(c, server);
  ResponseHead head;
  head.status = 200;
  REQUIRE(server.submit_head(id, head, false));
  const std::string body(500000, 'z');
  REQUIRE(server.submit_data(id, body, true));
  CHECK(server.unsent(id) == body.size());
  r.writable.clear();
  std::size_t total = 0;
  std::size_t pieces = 0;
  for (int i = 0; i < 100; ++i) {
    const std::string out(server.output());
    if (out.empty()) break;
    // One frame may straddle the cap: at most a frame (16 KiB and its header) over.
    CHECK(out.size() <= Http2ServerCodec::kOutputCap + 16384 + 9);
    total += out.size();
    ++pieces;
    c.receive(out);
    (void)c.output();
  }
  CHECK(pieces >= 8);  // 500,000 bytes in pieces of about 64 KiB
  CHECK(total > body.size());
  CHECK(server.unsent(id) == 0);
  CHECK(std::count(r.writable.begin(), r.writable.end(), id) >= 8);
  CHECK(c.responses[id].body.size() == body.size());
  CHECK(c.responses[id].ended);
}

TEST_CASE("http2 codec: a response that ends before its request body is followed by RST_STREAM NO_ERROR") {
  Recorder r;
  Http2Limits limits;
  limits.initial_stream_window = 16384;
  Http2ServerCodec server(limits, r);
  Client c;
  const std::string body(1 << 20, 'u');  // far more than the window; nothing is taken
  const auto id = c.request("POST", "/upload", {}, &body);
  pump(c, server);
  REQUIRE(r.requests.count(id) == 1);
  std::vector<Field> fields = {{"content-type", "text/plain"}};
  ResponseHead head;
  head.status = 413;
  head.fields = fields;
  REQUIRE(server.submit_head(id, head, false));
  REQUIRE(server.submit_data(id, "too large", true));
  const auto out = frames(server.output());
  // The response's END_STREAM goes out first, then the RST (never the other way: the
  // response would be cut).
  std::size_t end_at = out.size(), rst_at = out.size();
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i].stream != static_cast<std::uint32_t>(id)) continue;
    if ((out[i].type == 0x0 || out[i].type == 0x1) && (out[i].flags & 0x1)) end_at = i;
    if (out[i].type == 0x3 && rst_at == out.size()) rst_at = i;
  }
  // The RST is submitted when the END_STREAM frame is sent: in this output or the next.
  std::string rest;
  if (rst_at == out.size()) {
    const auto more = frames(server.output());
    for (const auto& f : more) {
      if (f.type == 0x3 && f.stream == static_cast<std::uint32_t>(id)) rest = f.payload;
    }
  } else {
    rest = out[rst_at].payload;
    CHECK(end_at < rst_at);
  }
  REQUIRE(end_at < out.size());
  REQUIRE(rest.size() == 4);
  CHECK(be32(rest) == h2_error::no_error);
  CHECK(r.closed.count(id) == 1);
  CHECK(server.open_streams() == 0);
}

TEST_CASE("http2 codec: WINDOW_UPDATE and PRIORITY floods count, also on streams nghttp2 ignores") {
  for (const std::uint8_t type : {std::uint8_t{0x8}, std::uint8_t{0x2}}) {
    Recorder r;
    Http2Limits limits;
    limits.max_control_frames_per_second = 50;
    Http2ServerCodec server(limits, r);
    std::string in(kPreface);
    in += frame(0x4, 0, 0, "");
    in += frame(0x1, 0x5, 1, get_block());  // stream 1 ends at once (closed once answered)
    const std::string increment("\0\0\0\x01", 4);
    const std::string priority("\0\0\0\x00\x10", 5);  // depends on stream 0, weight 17
    for (int i = 0; i < 200; ++i) {
      // Stream 99 was never opened: nghttp2 drops these without a callback.
      in += type == 0x8 ? frame(0x8, 0, 99, increment) : frame(0x2, 0, 99, priority);
    }
    (void)server.output();
    CHECK_FALSE(server.receive(in));
    CHECK(server.why() == Http2ServerCodec::End::flood);
  }
}

TEST_CASE("http2 codec: a client that sends a WINDOW_UPDATE for every DATA frame is not a flood") {
  Recorder r;
  Http2Limits limits;
  limits.max_control_frames_per_second = 20;
  Http2ServerCodec server(limits, r);
  Client c;
  const auto id = c.request("GET", "/download");
  pump(c, server);
  ResponseHead head;
  head.status = 200;
  REQUIRE(server.submit_head(id, head, false));
  // 2 MB in 16 KiB frames: about 128 DATA frames, each answered by the client's own
  // WINDOW_UPDATEs (stream and connection), far more than 20 in a second.
  REQUIRE(server.submit_data(id, std::string(2 << 20, 'd'), true));
  std::size_t updates = 0;
  for (int i = 0; i < 2000 && !c.responses[id].ended; ++i) {
    const std::string down(server.output());
    if (!down.empty()) c.receive(down);
    const auto up = c.output();
    for (const auto& f : frames(up)) updates += f.type == 0x8 ? 1 : 0;
    if (!up.empty()) REQUIRE(server.receive(up));
    if (down.empty() && up.empty()) break;
  }
  CHECK(c.responses[id].ended);
  CHECK(c.responses[id].body.size() == (2u << 20));
  CHECK(updates > 20);
  CHECK(server.why() == Http2ServerCodec::End::none);
}
